"""Issue 15: what a finished job leaves in Redis. A job acknowledged with a result record kept at
least an hour gets no tombstone (the record blocks a new enqueue of its id as well, and a
tombstone cost as much memory again); its id stays taken, and a re-sent ack is still no
refusal."""

from __future__ import annotations

from redis.asyncio import Redis

from errands import Enqueuer
from errands.store.keys import Keys
from errands.store.scripts import Acked, Scripts

POOL = "p0000000000000001"
HOUR_MS = 3_600_000


async def running_job(redis: Redis, namespace: str, token: str = "1") -> tuple[Keys, str]:
    """A job of ``work`` fetched by POOL (attempt ``token``): as fetch.lua leaves it."""
    keys = Keys(namespace)
    job = await Enqueuer(redis, namespace=namespace).enqueue("work")
    assert job is not None
    await redis.zadd(keys.pools, {POOL: 1})
    assert await redis.zrem(keys.queue("work"), job.id) == 1
    await redis.zadd(keys.in_progress(POOL), {f"{job.id}:work": 1})
    await redis.hincrby(keys.running, "work", 1)
    await redis.hset(keys.attempts, job.id, f"{POOL}:{token}")
    return keys, job.id


async def test_a_result_record_kept_an_hour_stands_for_the_tombstone(
    redis: Redis, namespace: str
) -> None:
    keys, job_id = await running_job(redis, namespace)
    scripts = Scripts(redis, keys)
    done = Acked(job_id, "work", b"7", 1, HOUR_MS, 1, token="1")
    assert await scripts.ack(POOL, [done], False, 2, True) == []
    assert await redis.zscore(keys.ended, job_id) is None
    assert await redis.pttl(keys.done(job_id)) > HOUR_MS - 60_000
    assert await scripts.ack(POOL, [done], False, 2, True) == []  # re-sent: no refusal
    again = await Enqueuer(redis, namespace=namespace).enqueue("work", job_id=job_id)
    assert again is not None and again.existed
    assert await redis.zcard(keys.queue("work")) == 0


async def test_a_shorter_or_no_result_record_leaves_a_tombstone(
    redis: Redis, namespace: str
) -> None:
    for n, ttl in enumerate((HOUR_MS - 1, 0)):
        keys, job_id = await running_job(redis, namespace, token=str(n))
        done = Acked(job_id, "work", b"7", 1, ttl, 1, token=str(n))
        assert await Scripts(redis, keys).ack(POOL, [done], False, 2, True) == []
        assert await redis.zscore(keys.ended, job_id) is not None


async def test_an_ack_fenced_out_is_refused_without_a_record(
    redis: Redis, namespace: str
) -> None:
    keys, job_id = await running_job(redis, namespace)
    stale = Acked(job_id, "work", b"7", 1, HOUR_MS, 1, token="0")  # another attempt's
    assert await Scripts(redis, keys).ack(POOL, [stale], False, 2, True) == [job_id]
    assert await redis.exists(keys.done(job_id)) == 0
