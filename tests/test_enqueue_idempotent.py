"""Issue 12 (defect 3): enqueue is idempotent on the job id. A job id that is stored (waiting,
running, dead, cancelled) or ended recently is not stored or queued again, nothing counts twice,
and the returned Job says it ``existed``; a re-sent call (redis-py re-sends EVALSHA after a
timeout) stores nothing either."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from errands import Enqueuer, FakeClock, Job, WorkerPool
from errands.store.keys import Keys
from errands.store.scripts import Scripts


def pool_for(redis: Redis, namespace: str, clock: FakeClock, runs: list[str]) -> WorkerPool:
    pool = WorkerPool(redis, namespace=namespace, clock=clock)

    @pool.job("charge")
    async def charge(job: Job, amount: int = 0) -> int:
        runs.append(job.id)
        return amount

    return pool


async def test_a_job_id_is_stored_once_while_it_lives_and_after_it_ended(
    redis: Redis, namespace: str
) -> None:
    keys, clock, runs = Keys(namespace), FakeClock(), []
    enqueuer = Enqueuer(redis, namespace=namespace, clock=clock)
    first = await enqueuer.enqueue("charge", {"amount": 5}, job_id="order-17")
    assert first is not None and first.id == "order-17" and not first.existed
    again = await enqueuer.enqueue("charge", {"amount": 6}, job_id="order-17")
    assert again is not None and again.existed
    assert await redis.zcard(keys.queue("charge")) == 1
    pool = pool_for(redis, namespace, clock, runs)
    await pool.drain(timeout=5)
    assert runs == ["order-17"]
    assert await first.result(timeout=1) == 5  # the first call's job ran, not the second's
    # finished: its id is remembered (result record and tombstone): not run again
    later = await enqueuer.enqueue("charge", {"amount": 7}, job_id="order-17")
    assert later is not None and later.existed
    await pool.drain(timeout=5)
    assert runs == ["order-17"]
    assert await redis.hget(keys.stats, "processed") == b"1"
    assert await redis.hget(keys.running, "charge") == b"0"


async def test_enqueue_many_flags_each_job(redis: Redis, namespace: str) -> None:
    keys = Keys(namespace)
    enqueuer = Enqueuer(redis, namespace=namespace)
    await enqueuer.enqueue("charge", job_id="a")
    jobs = await enqueuer.enqueue_many(
        [
            ("charge", {}, {"job_id": "a"}),
            ("charge", {}, {"job_id": "b"}),
            ("charge", {}, {"job_id": "b"}),  # twice in one batch: stored once
            ("charge", {}),
        ]
    )
    assert [(j.id, j.existed) for j in jobs[:3]] == [("a", True), ("b", False), ("b", True)]
    assert not jobs[3].existed
    assert await redis.zcard(keys.queue("charge")) == 3


async def test_job_ids_follow_the_rules_of_job_names(redis: Redis, namespace: str) -> None:
    enqueuer = Enqueuer(redis, namespace=namespace)
    for bad in ("", "a:b", "a b", 'q"uote', "{x}", "x" * 201, 17):
        with pytest.raises(ValueError, match="invalid job id"):
            await enqueuer.enqueue("charge", job_id=bad)  # type: ignore[arg-type]
    assert await redis.hlen(Keys(namespace).jobs) == 0


async def test_typed_enqueue_takes_a_job_id(redis: Redis, namespace: str) -> None:
    pool = WorkerPool(redis, namespace=namespace)

    @pool.job("charge")
    async def charge(amount: int) -> None: ...

    enqueuer = Enqueuer(redis, namespace=namespace)
    first = await charge.using(enqueuer, job_id="inv-9").enqueue(3)
    second = await charge.using(enqueuer, job_id="inv-9").enqueue(4)
    unique = await charge.using(enqueuer, job_id="inv-9", unique=True).enqueue(4)
    assert first is not None and second is not None and unique is not None
    assert (first.existed, second.existed, unique.existed) == (False, True, True)
    assert await redis.zcard(Keys(namespace).queue("charge")) == 1


async def test_a_resent_unique_enqueue_reports_its_own_job_stored(
    redis: Redis, namespace: str
) -> None:
    """The second send of the same call used to find its own job holding the digest and
    answer "duplicate" (enqueue_unique returned None for a job it had stored)."""
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    call = ("charge", "u1", b'{"n":"charge","a":{},"t":1.0}', 0, 0, "digest1", 10**13, 1)
    assert await scripts.enqueue_unique(*call) == (True, "u1", False)
    assert await scripts.enqueue_unique(*call) == (True, "u1", False)  # the re-send
    assert await redis.zcard(keys.queue("charge")) == 1
    # a different job with that id: nothing stored, and it says so
    other = ("charge", "u1", b'{"n":"charge","a":{"x":1},"t":2.0}', 0, 0, "digest2", 10**13, 1)
    assert await scripts.enqueue_unique(*other) == (True, "u1", True)
    assert await redis.hget(keys.unique, "digest2") is None
