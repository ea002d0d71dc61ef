"""Client.update_job on a waiting job of enqueue_unique: its lock moves with its args in the same
script (the old args are free again, the new ones locked), refused before any write when another
job holds the new args' lock; a lock on a ``key=`` stays; a re-sent call writes nothing twice."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from errands import Client, Enqueuer
from errands.building import unique_digest
from errands.store.keys import Keys
from tests.admin.test_resend import resent
from tests.support.invariants import assert_invariants
from tests.support.resend import snapshot


async def locks(redis: Redis, keys: Keys) -> tuple[dict[str, str], dict[str, str], list[str]]:
    def decode(raw: dict[bytes, bytes]) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in raw.items()}

    expiry = [m.decode() for m in await redis.zrange(keys.unique_expiry, 0, -1)]
    uniq, of_job = await redis.hgetall(keys.unique), await redis.hgetall(keys.unique_of_job)
    return decode(uniq), decode(of_job), expiry


@pytest.mark.parametrize("delay", [None, 60])
async def test_the_lock_moves_with_the_args(
    redis: Redis, namespace: str, client: Client, enqueuer: Enqueuer, delay: int | None
) -> None:
    keys = Keys(namespace)
    job = await enqueuer.enqueue_unique("x", {"a": 1}, delay=delay)
    assert job is not None
    expiry = await redis.zscore(keys.unique_expiry, unique_digest("x", {"a": 1}))
    with resent(client.scripts, "update_job") as firsts:
        info = await client.update_job(job.id, args={"a": 2})
    assert firsts == [1] and info.args == {"a": 2}
    new = unique_digest("x", {"a": 2})
    assert await locks(redis, keys) == ({new: job.id}, {job.id: new}, [new])
    assert await redis.zscore(keys.unique_expiry, new) == expiry  # (its expiry kept)
    assert await enqueuer.enqueue_unique("x", {"a": 2}, delay=delay) is None  # locked
    other = await enqueuer.enqueue_unique("x", {"a": 1}, delay=delay)  # free again
    assert other is not None
    await assert_invariants(redis, namespace)


async def test_args_another_job_holds_are_refused_before_any_write(
    redis: Redis, namespace: str, client: Client, enqueuer: Enqueuer
) -> None:
    one = await enqueuer.enqueue_unique("x", {"a": 1}, delay=60)
    two = await enqueuer.enqueue_unique("x", {"a": 2}, delay=60)
    assert one is not None and two is not None
    before = await snapshot(redis, namespace)
    with pytest.raises(ValueError, match="another job waits with these args"):
        await client.update_job(one.id, args={"a": 2})
    assert await snapshot(redis, namespace) == before
    info = await client.update_job(one.id, args={"a": 3}, priority=2)  # free args: edited
    assert (info.args, info.priority) == ({"a": 3}, 2)
    await assert_invariants(redis, namespace)


async def test_a_stale_lock_on_the_new_args_is_taken_over(
    redis: Redis, namespace: str, client: Client, enqueuer: Enqueuer
) -> None:
    keys = Keys(namespace)
    one = await enqueuer.enqueue_unique("x", {"a": 1}, delay=60)
    gone = await enqueuer.enqueue_unique("x", {"a": 2}, delay=60)
    assert one is not None and gone is not None
    await redis.hdel(keys.jobs, gone.id)  # (its job gone: the lock is ignored, enqueue_unique)
    await redis.zrem(keys.scheduled("x"), gone.id)
    await client.update_job(one.id, args={"a": 2})
    new = unique_digest("x", {"a": 2})
    assert await locks(redis, keys) == ({new: one.id}, {one.id: new}, [new])


async def test_a_lock_on_a_key_stays_and_a_plain_job_takes_none(
    redis: Redis, namespace: str, client: Client, enqueuer: Enqueuer
) -> None:
    keys = Keys(namespace)
    keyed = await enqueuer.enqueue_unique("x", {"a": 1}, key="k", delay=60)
    plain = await enqueuer.enqueue("x", {"a": 5}, delay=60)
    assert keyed is not None and plain is not None
    await client.update_job(keyed.id, args={"a": 2})
    await client.update_job(plain.id, args={"a": 6})
    k = unique_digest("x", "k")
    assert await locks(redis, keys) == ({k: keyed.id}, {keyed.id: k}, [k])
    assert await enqueuer.enqueue_unique("x", {"a": 3}, key="k", delay=60) is None
    assert await enqueuer.enqueue_unique("x", {"a": 6}, delay=60) is not None  # (plain: no lock)
    await assert_invariants(redis, namespace)


async def test_deleting_a_cancelled_job_keeps_its_cancelled_record(
    redis: Redis, namespace: str
) -> None:
    # a cancel is recorded at the attempt the job would run next: the deletion's record is the
    # one after (it overwrote the cancelled one)
    async with (
        Client(redis, namespace=namespace) as client,
        Enqueuer(redis, namespace=namespace, strict=None) as enqueuer,
    ):
        job = await enqueuer.enqueue("x", {"a": 1})
        assert job is not None and await client.cancel(job.id)
        assert await client.delete_cancelled_job(job.id)
        got = [(h.status, h.attempt) for h in await client.history_job(job.id)]
        assert sorted(got, key=lambda h: h[1]) == [("cancelled", 1), ("deleted", 2)]
