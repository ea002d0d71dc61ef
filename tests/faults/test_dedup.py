"""Dedup until finished when the owner's worker is killed (SIGKILL) while running it: the key
stays with the owner (taken back from the dead pool and run again), every enqueue meanwhile is
dropped naming it, and the key is free once the owner finished."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from errands import Client, Dedup, Enqueuer
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


async def test_rerun_waits_through_a_kill_of_the_running_holder(
    fleet: Fleet, main: Redis, oracle: Oracle, fault_redis_url: str, namespace: str
) -> None:
    """rerun_latest: the holder's worker is SIGKILLed; the holder runs again elsewhere, the rerun
    keeps waiting (taking the latest args meanwhile), then runs once, after it."""
    keys = fleet.keys
    d = Dedup("repo:y", until="finished", rerun_latest=True)
    async with Enqueuer.from_url(fault_redis_url, namespace=namespace) as enqueuer:
        fleet.env.update(FAST, FAULT_CONCURRENCY="2")
        first = fleet.start()
        await fleet.wait_ready(main)
        holder = await enqueuer.enqueue("work", {"seconds": 2.0}, dedup=d)
        assert holder is not None

        async def started(job_id: str) -> list[int]:
            return [s.pid for s in await oracle.starts() if s.id == job_id]

        await eventually(lambda: started(holder.id), 10, "the holder to start")
        rerun = await enqueuer.enqueue("work", {"seconds": 0.1}, dedup=d)
        assert rerun is not None and rerun.dedup is not None
        assert (rerun.dedup.status, rerun.dedup.holder) == ("rerun_queued", holder.id)
        fleet.kill(first)
        second = fleet.start()
        await fleet.wait_ready(main)
        latest = await enqueuer.enqueue("work", {"seconds": 0.2}, dedup=d)
        assert latest is not None and latest.dedup is not None
        assert (latest.dedup.status, latest.id) == ("rerun_queued", rerun.id)

        async def holder_again() -> bool:
            return second.pid in await started(holder.id)

        await eventually(holder_again, 20, "the holder to run again after the kill")
        await oracle.wait_ended([holder.id, rerun.id], timeout=30)
        starts = await oracle.starts()
        assert [s.id for s in starts if s.id != holder.id] == [rerun.id]  # once, after it
        last_holder_start = max(s.t for s in starts if s.id == holder.id)
        assert min(s.t for s in starts if s.id == rerun.id) > last_holder_start
        await assert_nothing_stuck(main, keys, ["work"])
        assert await main.hlen(keys.dedup) == 0 and await main.hlen(keys.dedup_next) == 0


async def test_a_rerun_run_again_by_hand_waits_through_a_kill_of_the_holder(
    fleet: Fleet, main: Redis, oracle: Oracle, fault_redis_url: str, namespace: str
) -> None:
    """rerun_latest: a cancelled job of the key rescheduled by hand while the holder runs waits
    as its rerun; the holder's worker is SIGKILLed, the holder runs again elsewhere, and the
    rerun (given the latest args meanwhile) runs once, after it."""
    keys = fleet.keys
    d = Dedup("repo:z", until="finished", rerun_latest=True)
    async with (
        Enqueuer.from_url(fault_redis_url, namespace=namespace) as enqueuer,
        Client.from_url(fault_redis_url, namespace=namespace) as client,
    ):
        cancelled = await enqueuer.enqueue("work", {"seconds": 0.1}, delay=600, dedup=d)
        assert cancelled is not None and await client.cancel(cancelled.id) == "cancelled"
        fleet.env.update(FAST, FAULT_CONCURRENCY="2")
        first = fleet.start()
        await fleet.wait_ready(main)
        holder = await enqueuer.enqueue("work", {"seconds": 2.0}, dedup=d)
        assert holder is not None

        async def started(job_id: str) -> list[int]:
            return [s.pid for s in await oracle.starts() if s.id == job_id]

        await eventually(lambda: started(holder.id), 10, "the holder to start")
        assert await client.reschedule(cancelled.id, 0)  # waits as the holder's rerun
        fleet.kill(first)
        second = fleet.start()
        await fleet.wait_ready(main)
        latest = await enqueuer.enqueue("work", {"seconds": 0.2}, dedup=d)
        assert latest is not None and latest.dedup is not None
        assert (latest.dedup.status, latest.id) == ("rerun_queued", cancelled.id)

        async def holder_again() -> bool:
            return second.pid in await started(holder.id)

        await eventually(holder_again, 20, "the holder to run again after the kill")
        await oracle.wait_ended([holder.id, cancelled.id], timeout=30)
        starts = await oracle.starts()
        assert [s.id for s in starts if s.id != holder.id] == [cancelled.id]  # once, after it
        last_holder_start = max(s.t for s in starts if s.id == holder.id)
        assert min(s.t for s in starts if s.id == cancelled.id) > last_holder_start
        await assert_nothing_stuck(main, keys, ["work"])
        assert await main.hlen(keys.dedup) == 0 and await main.hlen(keys.dedup_next) == 0
