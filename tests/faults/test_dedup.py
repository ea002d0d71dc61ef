"""Dedup until finished when the owner's worker is killed (SIGKILL) while running it: the key
stays with the owner (taken back from the dead pool and run again), every enqueue meanwhile is
dropped naming it, and the key is free once the owner finished."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from errands import Dedup, Enqueuer
from tests.support.procs import eventually

from .common import FAST, Fleet, Oracle, assert_nothing_stuck, report

pytestmark = pytest.mark.faults

async def test_owner_killed_while_running_keeps_the_key_until_it_finished(
    fleet: Fleet, main: Redis, oracle: Oracle, fault_redis_url: str, namespace: str
) -> None:
    keys = fleet.keys
    d = Dedup("repo:x", until="finished")
    async with Enqueuer.from_url(fault_redis_url, namespace=namespace) as enqueuer:
        fleet.env.update(FAST, FAULT_CONCURRENCY="2")
        first = fleet.start()
        await fleet.wait_ready(main)
        owner = await enqueuer.enqueue("work", {"seconds": 3.0}, dedup=d)
        assert owner is not None and owner.dedup is not None and owner.dedup.enqueued

        async def started_by(pid: int) -> bool:
            return any(s.id == owner.id and s.pid == pid for s in await oracle.starts())

        await eventually(lambda: started_by(first.pid), 10, "the owner to start")
        killed_at = fleet.kill(first)
        dropped = 0
        second = fleet.start()
        await fleet.wait_ready(main)

        async def rerun() -> bool:
            nonlocal dropped
            job = await enqueuer.enqueue("work", {"seconds": 0.01}, dedup=d)
            assert job is not None and job.dedup is not None
            assert (job.dedup.status, job.dedup.holder) == ("dropped", owner.id)
            dropped += 1
            return await started_by(second.pid)

        await eventually(rerun, 20, "the owner to run again after the kill")
        rerun_s = min(s.t for s in await oracle.starts() if s.pid == second.pid) - killed_at
        await oracle.wait_ended([owner.id], timeout=20)
        await assert_nothing_stuck(main, keys, ["work"])
        assert await main.hlen(keys.dedup) == 0 and await main.hlen(keys.dedup_of_job) == 0
        assert {s.id for s in await oracle.starts()} == {owner.id}  # never two jobs for it
        after = await enqueuer.enqueue("work", {"seconds": 0.01}, dedup=d)
        assert after is not None and after.dedup is not None and after.dedup.enqueued
        await oracle.wait_ended([after.id], timeout=20)
        report(
            "dedup: owner killed while running",
            dropped_meanwhile=dropped,
            owner_rerun_after_kill_s=rerun_s,
        )
