"""admin/bulk.py: bulk actions run a window of actions at once, window after window in order,
each id once; an action that raises does not stop the others (its error is raised after); a
window is at most half the client's pool. No Redis: the actions are fakes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

from errands.admin.bulk import WINDOW, act_on_each, gathered, window_for
from errands.errors import RedisUnavailableError


class Recorder:
    """An action that records the order ids start in and how many run at once; raises for
    the ids in ``failing`` (``error(message)``, a RuntimeError by default); true for even
    numbered ids."""

    def __init__(
        self,
        failing: frozenset[str] | set[str] = frozenset(),
        error: Callable[[str], Exception] = RuntimeError,
    ) -> None:
        self.started: list[str] = []
        self.running = 0
        self.most = 0
        self.failing = failing
        self.error = error

    async def __call__(self, job_id: str) -> bool:
        self.started.append(job_id)
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await asyncio.sleep(0)  # (the others of the window start meanwhile)
            await asyncio.sleep(0)
            if job_id in self.failing:
                raise self.error(f"failed {job_id}")
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


def _readonly(message: str) -> Exception:
    return ReadOnlyError(f"You can't write against a read only replica. ({message})")


def _oom(message: str) -> Exception:
    return OutOfMemoryError(f"command not allowed when used memory > 'maxmemory'. ({message})")


@pytest.mark.parametrize(
    "error", [RedisConnectionError, RedisTimeoutError, RedisUnavailableError, _readonly, _oom]
)
async def test_a_window_where_every_action_fails_for_the_server_starts_no_more(
    error: Callable[[str], Exception],
) -> None:
    """Unreachable, or refusing every call for its state (a replica, over maxmemory): the next
    windows would fail the same way, one round trip a job."""
    action = Recorder(failing=set(IDS), error=error)
    with pytest.raises(Exception, match="failed 0") as caught:
        await act_on_each(IDS, action, window=64)
    assert action.started == IDS[:64]
    assert caught.value.__notes__ == [
        "bulk action: 0 of 300 done, 64 failed, 236 not tried"
        " (Redis unreachable or refusing: every action of a window failed)"
    ]


async def test_a_window_where_every_action_fails_for_its_own_id_does_not_stop_the_rest() -> None:
    """70 ids refused (a ValueError each: the id check) first, then 3 good ones: a whole window
    failed, but not to reach Redis; the good ones were left undone ("0 of 73 done, 50 failed,
    23 not tried")."""
    ids = [f"{i}x" for i in range(70)] + ["0", "2", "4"]
    action = Recorder(failing=set(ids[:70]), error=ValueError)
    with pytest.raises(ValueError, match="failed 0x") as caught:
        await act_on_each(ids, action, window=50)
    assert action.started == ids
    assert caught.value.__notes__ == ["bulk action: 3 of 73 done, 70 failed"]
    # a window of both kinds of errors (some ids refused, the others unreachable): goes on
    mixed = Recorder(failing=set(ids[:70]), error=ValueError)
    flaky = Recorder(failing={"0"}, error=RedisConnectionError)

    async def both(job_id: str) -> bool:
        return await (mixed if job_id.endswith("x") else flaky)(job_id)

    with pytest.raises(ValueError):
        await act_on_each([*ids[:3], "0", *ids[3:70], "2", "4"], both, window=4)
    assert flaky.started == ["0", "2", "4"]


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
