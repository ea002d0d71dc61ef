"""admin/bulk.py: bulk actions run a window of actions at once, window after window in order,
each id once; an action that raises does not stop the others (its error is raised after); a
window is at most half the client's pool. No Redis: the actions are fakes."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster

from errands.admin.bulk import WINDOW, act_on_each, gathered, window_for


class Recorder:
    """An action that records the order ids start in and how many run at once; raises for
    the ids in ``failing``; true for even numbered ids."""

    def __init__(self, failing: frozenset[str] | set[str] = frozenset()) -> None:
        self.started: list[str] = []
        self.running = 0
        self.most = 0
        self.failing = failing

    async def __call__(self, job_id: str) -> bool:
        self.started.append(job_id)
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await asyncio.sleep(0)  # (the others of the window start meanwhile)
            await asyncio.sleep(0)
            if job_id in self.failing:
                raise RuntimeError(f"failed {job_id}")
            return int(job_id) % 2 == 0
        finally:
            self.running -= 1


IDS = [str(i) for i in range(300)]


async def test_each_id_is_acted_on_once_window_by_window_in_order() -> None:
    action = Recorder()
    assert await act_on_each(IDS, action, window=64) == 150
    assert sorted(action.started, key=int) == IDS  # each once
    assert action.most == 64  # (sequential before: 1)
    # every id of a window starts before any of the next one
    for w in range(0, 300, 64):
        assert set(action.started[w : w + 64]) == set(IDS[w : w + 64])


async def test_an_error_does_not_stop_the_others_and_is_raised_after() -> None:
    action = Recorder(failing={"100", "201"})
    with pytest.raises(RuntimeError, match="failed 100") as caught:
        await act_on_each(IDS, action, window=64)
    assert sorted(action.started, key=int) == IDS  # the ids after the failing ones too
    # (150 even ids true, but 100 failed)
    assert caught.value.__notes__ == ["bulk action: 149 of 300 done, 2 failed"]


async def test_a_window_where_every_action_fails_starts_no_more() -> None:
    action = Recorder(failing=set(IDS))
    with pytest.raises(RuntimeError, match="failed 0") as caught:
        await act_on_each(IDS, action, window=64)
    assert action.started == IDS[:64]
    assert caught.value.__notes__ == [
        "bulk action: 0 of 300 done, 64 failed, 236 not tried (every action of a window failed)"
    ]


async def test_a_cancellation_inside_an_action_is_raised() -> None:
    async def cancelled(job_id: str) -> bool:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await act_on_each(IDS, cancelled, window=64)


async def test_gathered_keeps_the_order_and_raises_the_first_error() -> None:
    async def double(i: int) -> int:
        await asyncio.sleep(0.001 * (i % 3))  # (ending out of order)
        return 2 * i

    assert await gathered(range(200), double, window=64) == [2 * i for i in range(200)]

    async def fails_at_70(i: int) -> int:
        if i in (70, 90):
            raise ValueError(i)
        return i

    with pytest.raises(ValueError, match="70"):
        await gathered(range(200), fails_at_70, window=64)


def test_a_window_is_at_most_half_the_pool() -> None:
    assert window_for(Redis(max_connections=8)) == 4
    assert window_for(Redis(max_connections=1)) == 1
    assert window_for(Redis(max_connections=1000)) == WINDOW == 64
    assert window_for(Redis(connection_pool=BlockingConnectionPool(max_connections=20))) == 10
    assert window_for(object()) == WINDOW
    cluster = RedisCluster(host="127.0.0.1", port=1, max_connections=6)  # (not connected)
    assert window_for(cluster) == 3
