"""The held fetch connection (store/hotcalls.py) when it fails: a fetch whose reply was lost
has its jobs looked for at once, and a connection to a master demoted to a replica (READONLY,
a Sentinel failover) is given up instead of refusing every fetch."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError

from errands import Enqueuer, Job, WorkerPool
from errands.store.hotcalls import WorkerScripts
from errands.store.pinned import PinnedScript
from errands.store.scripts import Arg
from tests.support.procs import eventually


def now(check: Callable[[], Any]) -> Callable[[], Awaitable[Any]]:
    async def probe() -> Any:
        return check()

    return probe


async def started_pool(redis: Redis, namespace: str, ran: asyncio.Event) -> WorkerPool:
    pool = WorkerPool(redis, namespace=namespace, concurrency=2, poll_interval=30.0)

    @pool.job("a")
    async def a(job: Job) -> None:
        ran.set()

    await pool.start()
    assert pool.worker is not None and isinstance(pool.worker.scripts, WorkerScripts)
    return pool


async def test_the_jobs_of_a_fetch_whose_reply_was_lost_run_soon(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reply of a fetch that took the job is lost on the held connection: the job sits in
    the pool's in-progress set; the pool looks for such jobs at once, not at its next periodic
    look (an hour away here), and runs it."""
    ran = asyncio.Event()
    pool = await started_pool(redis, namespace, ran)
    try:
        worker = pool.worker
        assert worker is not None and isinstance(worker.scripts, WorkerScripts)
        worker.reclaim_interval = 3600.0
        held, lose = worker.scripts.pinned["fetch"], [True]
        # the pool's first fetch done (it found nothing): none is in flight, unpatched
        await eventually(now(lambda: worker._marked_idle), 10, "the first fetch")
        call = PinnedScript.__call__

        async def lossy(self: PinnedScript, keys: Sequence[str], args: Sequence[Arg]) -> Any:
            reply = await call(self, keys, args)
            if self is held and lose and len(reply) > 4:  # (a job taken: 4 + 5 per job)
                lose.clear()
                raise RedisConnectionError("the reply was lost")
            return reply

        monkeypatch.setattr(PinnedScript, "__call__", lossy)
        await Enqueuer(redis, namespace=namespace).enqueue("a", {}, job_id="orphan")
        await asyncio.wait_for(ran.wait(), 10)
        assert not lose and worker.reclaimed == 1
    finally:
        await pool.stop()


async def test_a_held_connection_to_a_demoted_master_is_given_up(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every call on the old connection answers READONLY (as a master turned replica does):
    the fetch goes the general way and the next one takes a new connection."""
    ran = asyncio.Event()
    pool = await started_pool(redis, namespace, ran)
    try:
        assert pool.worker is not None and isinstance(pool.worker.scripts, WorkerScripts)
        held = pool.worker.scripts.pinned["fetch"]
        async with asyncio.timeout(10):
            while held._conn is None:  # (the pool's first fetch connects it)
                await asyncio.sleep(0.005)
        old = held._conn
        call = PinnedScript.__call__

        async def demoted(self: PinnedScript, keys: Sequence[str], args: Sequence[Arg]) -> Any:
            if self is held and self._conn is old:
                raise ReadOnlyError("You can't write against a read only replica.")
            return await call(self, keys, args)

        monkeypatch.setattr(PinnedScript, "__call__", demoted)
        await Enqueuer(redis, namespace=namespace).enqueue("a", {})
        await asyncio.wait_for(ran.wait(), 10)
        assert held._conn is not old
    finally:
        await pool.stop()
