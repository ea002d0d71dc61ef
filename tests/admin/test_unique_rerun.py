"""An enqueue_unique job an admin action puts back to wait from the dead or cancelled set
(``reschedule``, ``retry_dead_job``, ``retry_all_dead_jobs``) takes its lock again, in the same
script (lua/move.lua), as an enqueue would: a second enqueue_unique of its args meanwhile is
refused. When another live job holds the lock by then, the action is refused with
UniqueLockHeldError before any write, and the job stays where it was: two jobs never wait with
one lock's args. The actions that keep a job waiting (``run_scheduled_now``) keep its lock, and
``destroy`` / ``delete_*`` free it."""

from __future__ import annotations

import time

import pytest
from redis.asyncio import Redis

from errands import Client, Enqueuer, Job, WorkerPool
from errands.admin.relock import NO_LOCK, lock_again
from errands.building import unique_digest
from errands.errors import NonRetryableError, UniqueLockHeldError
from errands.store.keys import Keys
from tests.admin.test_resend import resent
from tests.admin.test_update_unique import locks
from tests.support.invariants import assert_invariants
from tests.support.resend import snapshot

DIGEST = unique_digest("x", {"a": 1})


async def dead_unique(redis_url: str, namespace: str, enqueuer: Enqueuer) -> str:
    """A job of enqueue_unique("x", {"a": 1}) that ran (its start released its lock) and died."""
    job = await enqueuer.enqueue_unique("x", {"a": 1})
    assert job is not None
    pool = WorkerPool.from_url(redis_url, namespace=namespace)

    @pool.job("x")
    async def fail(job: Job, a: int) -> None:
        raise NonRetryableError("broken")

    async with pool:
        await pool.drain(timeout=10)
    assert await enqueuer.redis.zscore(enqueuer.keys.dead, job.id) is not None
    return job.id


async def ended_unique(
    ended: str, redis_url: str, namespace: str, enqueuer: Enqueuer, client: Client
) -> str:
    if ended == "dead":
        return await dead_unique(redis_url, namespace, enqueuer)
    job = await enqueuer.enqueue_unique("x", {"a": 1}, delay=60)
    assert job is not None
    assert await client.cancel(job.id) == "cancelled"
    return job.id


async def unreplied(redis: Redis, namespace: str) -> dict[bytes, object]:
    return {k: v for k, v in (await snapshot(redis, namespace)).items() if b":reply:" not in k}


async def run_again(client: Client, job_id: str, how: str) -> bool:
    if how == "retry":
        return await client.retry_dead_job(job_id)
    if how == "later":
        return await client.reschedule(job_id, time.time() + 600)
    return await client.reschedule(job_id, 0)  # a time in the past: queued now


CASES = [
    ("cancelled", "now"),
    ("cancelled", "later"),
    ("dead", "now"),
    ("dead", "later"),
    ("dead", "retry"),
]


@pytest.mark.parametrize(("ended", "how"), CASES)
async def test_a_job_run_again_takes_its_lock_again(
    redis: Redis,
    redis_url: str,
    namespace: str,
    client: Client,
    enqueuer: Enqueuer,
    ended: str,
    how: str,
) -> None:
    keys = Keys(namespace)
    job_id = await ended_unique(ended, redis_url, namespace, enqueuer, client)
    assert await locks(redis, keys) == ({}, {}, [])  # (its cancel or start released it)
    with resent(client.scripts, "move") as firsts:
        assert await run_again(client, job_id, how)
    assert firsts == [1]
    assert await locks(redis, keys) == ({DIGEST: job_id}, {job_id: DIGEST}, [DIGEST])
    expiry = await redis.zscore(keys.unique_expiry, DIGEST)
    due = time.time() + (600 if how == "later" else 0)
    assert expiry is not None and abs(expiry / 1000 - (due + 24 * 3600)) < 60  # due + 24 h
    assert await enqueuer.enqueue_unique("x", {"a": 1}) is None  # it waits with these args
    await assert_invariants(redis, namespace)


@pytest.mark.parametrize(("ended", "how"), CASES)
async def test_a_job_whose_lock_another_job_holds_is_not_run_again(
    redis: Redis,
    redis_url: str,
    namespace: str,
    client: Client,
    enqueuer: Enqueuer,
    ended: str,
    how: str,
) -> None:
    keys = Keys(namespace)
    job_id = await ended_unique(ended, redis_url, namespace, enqueuer, client)
    holder = await enqueuer.enqueue_unique("x", {"a": 1}, delay=60)
    assert holder is not None
    before = await unreplied(redis, namespace)
    with resent(client.scripts, "move") as firsts, pytest.raises(UniqueLockHeldError) as held:
        await run_again(client, job_id, how)
    assert firsts == [-1] and holder.id in str(held.value)  # (a re-send answers as the first)
    assert await unreplied(redis, namespace) == before  # (nothing but its reply key written)
    info = await client.job(job_id)
    assert info is not None and info.status == ended
    assert await locks(redis, keys) == ({DIGEST: holder.id}, {holder.id: DIGEST}, [DIGEST])
    # once the holder started (its lock released), the job runs again, taking the lock
    assert await client.destroy(holder.id)
    assert await run_again(client, job_id, how)
    assert await locks(redis, keys) == ({DIGEST: job_id}, {job_id: DIGEST}, [DIGEST])
    await assert_invariants(redis, namespace)


async def test_retry_all_dead_jobs_skips_a_job_whose_lock_is_held(
    redis: Redis, redis_url: str, namespace: str, client: Client, enqueuer: Enqueuer
) -> None:
    keys = Keys(namespace)
    job_id = await dead_unique(redis_url, namespace, enqueuer)
    plain = await enqueuer.enqueue("y", {})
    assert plain is not None
    await redis.zrem(keys.queue("y"), plain.id)
    await redis.zadd(keys.dead, {plain.id: 1})
    holder = await enqueuer.enqueue_unique("x", {"a": 1}, delay=60)
    assert holder is not None
    assert await client.retry_all_dead_jobs() == 1  # the plain job; the unique one stays dead
    assert [m.decode() for m in await redis.zrange(keys.dead, 0, -1)] == [job_id]
    assert await locks(redis, keys) == ({DIGEST: holder.id}, {holder.id: DIGEST}, [DIGEST])
    await assert_invariants(redis, namespace)


async def test_a_stale_lock_is_taken_over(
    redis: Redis, redis_url: str, namespace: str, client: Client, enqueuer: Enqueuer
) -> None:
    """A lock whose holder is gone (removed by hand) counts as free, as for enqueue_unique."""
    keys = Keys(namespace)
    job_id = await dead_unique(redis_url, namespace, enqueuer)
    gone = await enqueuer.enqueue_unique("x", {"a": 1}, delay=60)
    assert gone is not None
    await redis.hdel(keys.jobs, gone.id)
    await redis.zrem(keys.scheduled("x"), gone.id)
    assert await client.retry_dead_job(job_id)
    assert await locks(redis, keys) == ({DIGEST: job_id}, {job_id: DIGEST}, [DIGEST])


async def test_a_lock_past_its_expiry_is_taken_over_and_its_old_holder_lets_it_be(
    redis: Redis, redis_url: str, namespace: str, client: Client, enqueuer: Enqueuer
) -> None:
    """docs/enqueueing.md: a lock past its expiry counts as free (as for enqueue_unique): the
    job run again takes it, and its old holder (still waiting) no longer owns it: its end
    (here a destroy) leaves the new holder's lock alone."""
    keys = Keys(namespace)
    job_id = await dead_unique(redis_url, namespace, enqueuer)
    old = await enqueuer.enqueue_unique("x", {"a": 1}, delay=60)
    assert old is not None
    await redis.zadd(keys.unique_expiry, {DIGEST: 1})  # (its expiry passed long ago)
    assert await client.retry_dead_job(job_id)
    assert await locks(redis, keys) == ({DIGEST: job_id}, {job_id: DIGEST}, [DIGEST])
    assert await client.destroy(old.id)
    assert await locks(redis, keys) == ({DIGEST: job_id}, {job_id: DIGEST}, [DIGEST])
    await assert_invariants(redis, namespace)


async def test_a_job_edited_while_dead_takes_the_lock_of_its_new_args(
    redis: Redis, redis_url: str, namespace: str, client: Client, enqueuer: Enqueuer
) -> None:
    keys = Keys(namespace)
    job_id = await dead_unique(redis_url, namespace, enqueuer)
    await client.update_job(job_id, args={"a": 2})
    assert await client.retry_dead_job(job_id)
    new = unique_digest("x", {"a": 2})
    assert await locks(redis, keys) == ({new: job_id}, {job_id: new}, [new])
    assert await enqueuer.enqueue_unique("x", {"a": 1}) is not None  # the old args are free
    await assert_invariants(redis, namespace)


async def test_a_scheduled_job_run_now_keeps_its_lock_and_a_deleted_one_frees_it(
    redis: Redis, namespace: str, client: Client, enqueuer: Enqueuer
) -> None:
    """No defect here: run_scheduled_now keeps the lock; destroy and delete_* free it."""
    keys = Keys(namespace)
    job = await enqueuer.enqueue_unique("x", {"a": 1}, delay=60)
    assert job is not None
    assert await client.run_scheduled_now(job.id)
    assert await locks(redis, keys) == ({DIGEST: job.id}, {job.id: DIGEST}, [DIGEST])
    assert await enqueuer.enqueue_unique("x", {"a": 1}) is None
    assert await client.delete_queued_job(job.id)
    assert await locks(redis, keys) == ({}, {}, [])
    again = await enqueuer.enqueue_unique("x", {"a": 1}, delay=60)
    assert again is not None
    assert await client.destroy(again.id)
    assert await locks(redis, keys) == ({}, {}, [])
    await assert_invariants(redis, namespace)


@pytest.mark.parametrize("raw", [None, b"", b"not json", b"[1]", b'{"u": 5}', b'{"u": ""}'])
def test_no_lock_for_an_envelope_without_a_digest(raw: bytes | None) -> None:
    assert lock_again(raw, 10.0, 20.0) == NO_LOCK


def test_the_lock_taken_again_expires_a_day_after_the_job_is_due() -> None:
    assert lock_again(b'{"u": "d1"}', 10.0, 20.0) == ("d1", 20_000 + 86_400_000)
    assert lock_again(b'{"u": "d1"}', 30.0, 20.0) == ("d1", 30_000 + 86_400_000)
