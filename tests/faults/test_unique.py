"""Scenario 8 of issue 8: unique jobs under 50 concurrent enqueuers, and re-enqueueing after the
job was deleted, after it started, and after its worker died running it.

Bound: each round of 50 racing ``enqueue_unique`` calls (one connection each) stores exactly one
job; a new one can be enqueued at once after a delete, a start, or a SIGKILL of the worker.
"""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from errands import Client, Enqueuer
from tests.support.procs import eventually

from .common import FAST, Fleet, Oracle, assert_nothing_stuck, report

pytestmark = pytest.mark.faults

ROUNDS = 10
ENQUEUERS = 50


async def test_unique_jobs_under_concurrent_enqueuers_and_faults(
    fleet: Fleet, main: Redis, oracle: Oracle, fault_redis_url: str, namespace: str
) -> None:
    keys = fleet.keys
    enqueuers = [Enqueuer.from_url(fault_redis_url, namespace=namespace) for _ in range(50)]
    client = Client.from_url(fault_redis_url, namespace=namespace)
    try:
        await asyncio.gather(*(e.redis.ping() for e in enqueuers))  # one live connection each
        stored_per_round = []
        for r in range(ROUNDS):
            args = {"seconds": 0.05 + r / 1000}
            gate = asyncio.Event()

            async def racer(
                enqueuer: Enqueuer, args: dict[str, float] = args, gate: asyncio.Event = gate
            ) -> bool:
                await gate.wait()
                return await enqueuer.enqueue_unique("work", args) is not None

            racers = [asyncio.create_task(racer(e)) for e in enqueuers]
            await asyncio.sleep(0.01)
            gate.set()
            stored_per_round.append(sum(await asyncio.gather(*racers)))
        queued = await main.zcard(keys.queue("work"))
        assert stored_per_round == [1] * ROUNDS, stored_per_round
        assert queued == ROUNDS

        # deleted: the lock goes with the job
        first = (await main.zrange(keys.queue("work"), 0, 0))[0].decode()
        assert await client.destroy(first)
        assert await enqueuers[0].enqueue_unique("work", {"seconds": 0.05}) is not None
        assert await enqueuers[1].enqueue_unique("work", {"seconds": 0.05}) is None

        # started: the lock is released when the job starts
        fleet.env.update(FAST, FAULT_CONCURRENCY="4")
        fleet.start(), fleet.start()
        await fleet.wait_ready(main)
        await asyncio.sleep(1.6)  # the reapers are armed
        long = await enqueuers[2].enqueue_unique("work", {"seconds": 2.0})
        assert long is not None

        async def started(job_id: str) -> int | None:
            pids = [s.pid for s in await oracle.starts() if s.id == job_id]
            return pids[0] if pids else None

        runner = await eventually(lambda: started(long.id), 10, "the unique job to start")
        await client.pause("work")  # the next one stays queued, holding the lock
        again = await enqueuers[3].enqueue_unique("work", {"seconds": 2.0})
        assert again is not None, "not re-enqueueable after the job started"
        assert await enqueuers[4].enqueue_unique("work", {"seconds": 2.0}) is None
        await client.unpause("work")
        await eventually(lambda: started(again.id), 10, "the second one to start")

        # its worker died: SIGKILL the pool running it; re-enqueueing works at once, and the job
        # comes back from the dead pool without taking the lock again
        victim = next(p for p in fleet.alive if p.pid == runner)
        killed_at = fleet.kill(victim)
        fleet.start()
        after_death = await enqueuers[5].enqueue_unique("work", {"seconds": 2.0})
        assert after_death is not None, "not re-enqueueable after its worker died"

        async def restarted() -> bool:
            return any(s.id == long.id and s.t > killed_at for s in await oracle.starts())

        await eventually(restarted, 10, "the job of the dead worker to run again")
        ids = [long.id, again.id, after_death.id]
        await oracle.wait_ended(ids, timeout=20)
        # everything ran; the locks are all released
        all_queued_ids = {s.id for s in await oracle.starts()}
        await oracle.wait_ended(all_queued_ids, timeout=20)
        await assert_nothing_stuck(main, keys, ["work"])
        assert await main.hlen(keys.unique) == 0
        assert await enqueuers[6].enqueue_unique("work", {"seconds": 2.0}) is not None
        report(
            "8. unique jobs, 50 concurrent enqueuers",
            rounds=ROUNDS,
            enqueuers=ENQUEUERS,
            stored_per_round=max(stored_per_round),
            reenqueue_after_delete="yes",
            reenqueue_after_start="yes",
            reenqueue_after_worker_death="yes",
            dead_pool_job_rerun_s=min(
                s.t - killed_at
                for s in await oracle.starts()
                if s.id == long.id and s.t > killed_at
            ),
        )

    finally:
        await asyncio.gather(*(e.aclose() for e in enqueuers))
        await client.aclose()
