"""A Dedup job an admin action puts back to wait from the dead or cancelled set
(``reschedule``, ``retry_dead_job``, ``retry_all_dead_jobs``, the dashboard's retry) takes its
key again, in the same script (lua/move.lua), in the waiting letter of its mode: a duplicate
enqueue meanwhile is deduplicated against it (dropped, or with debounce and rerun_latest it
takes the duplicate's envelope), and its end frees the key. Its envelope records its Dedup
(``x``: the mode letter and the key) for as long as the job is stored. When another live job
holds the key by then, the action is refused with DedupKeyHeldError, nothing moved (a re-send
answers as the first): two jobs of one key never wait or run at once. A throttled job runs again
without touching the window (a throttle counts enqueues); a job stored without the record (by an
older errands) runs again without a key, as before (docs/dedup.md, "Run again by hand")."""

from __future__ import annotations

import time

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from errands import Client, Dedup, Enqueuer, Job, WorkerPool
from errands.errors import DedupKeyHeldError, NonRetryableError
from errands.store.keys import Keys
from tests.admin.test_resend import resent
from tests.admin.test_unique_rerun import run_again, unreplied
from tests.support.invariants import assert_invariants
from tests.support.resend import snapshot

MODES = {
    "s": Dedup("k"),
    "d": Dedup("k", debounce=True),
    "f": Dedup("k", until="finished"),
    "r": Dedup("k", until="finished", rerun_latest=True),
}
CASES = [
    ("cancelled", "now"),
    ("cancelled", "later"),
    ("dead", "now"),
    ("dead", "later"),
    ("dead", "retry"),
]
KEY = "x:k"  # (the key as stored: per job name)


async def dead_job(redis_url: str, namespace: str, enqueuer: Enqueuer, d: Dedup) -> str:
    """A job of ``x`` enqueued with ``d`` that ran and died (its start or end freed its key)."""
    job = await enqueuer.enqueue("x", {"a": 1}, dedup=d)
    assert job is not None and job.dedup is not None and job.dedup.enqueued
    pool = WorkerPool.from_url(redis_url, namespace=namespace)

    @pool.job("x")
    async def fail(job: Job, a: int) -> None:
        raise NonRetryableError("broken")

    async with pool:
        await pool.drain(timeout=10)
    assert await enqueuer.redis.zscore(enqueuer.keys.dead, job.id) is not None
    return job.id


async def ended_job(
    ended: str, redis_url: str, namespace: str, enqueuer: Enqueuer, client: Client, d: Dedup
) -> str:
    if ended == "dead":
        return await dead_job(redis_url, namespace, enqueuer, d)
    job = await enqueuer.enqueue("x", {"a": 1}, delay=60, dedup=d)
    assert job is not None and job.dedup is not None and job.dedup.enqueued
    assert await client.cancel(job.id) == "cancelled"
    return job.id


async def held(redis: Redis, keys: Keys) -> tuple[dict[str, str], dict[str, str]]:
    """The dedup keys' owners, and the owners' records."""

    def decode(raw: dict[bytes, bytes]) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in raw.items()}

    return decode(await redis.hgetall(keys.dedup)), decode(await redis.hgetall(keys.dedup_of_job))


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize(("ended", "how"), CASES)
async def test_a_job_run_again_takes_its_key_again(
    redis: Redis,
    redis_url: str,
    namespace: str,
    client: Client,
    enqueuer: Enqueuer,
    mode: str,
    ended: str,
    how: str,
) -> None:
    keys = Keys(namespace)
    d = MODES[mode]
    job_id = await ended_job(ended, redis_url, namespace, enqueuer, client, d)
    assert await held(redis, keys) == ({}, {})  # (its start, end or cancel freed it)
    with resent(client.scripts, "move") as firsts:
        assert await run_again(client, job_id, how)
    assert firsts == [1]
    assert await held(redis, keys) == ({KEY: job_id}, {job_id: mode + KEY})  # waiting again
    await assert_invariants(redis, namespace)
    dup = await enqueuer.enqueue("x", {"a": 2}, dedup=d)
    assert dup is not None and dup.dedup is not None
    # deduplicated against it, as against the job an enqueue stored
    status = "replaced" if mode in "dr" else "dropped"
    assert (dup.dedup.status, dup.dedup.holder, dup.id) == (status, job_id, job_id)
    assert await redis.hlen(keys.jobs) == 1
    await assert_invariants(redis, namespace)
    assert await client.destroy(job_id)  # its end frees the key
    assert await held(redis, keys) == ({}, {})


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize(("ended", "how"), CASES)
async def test_a_job_whose_key_another_job_holds_is_not_run_again(
    redis: Redis,
    redis_url: str,
    namespace: str,
    client: Client,
    enqueuer: Enqueuer,
    mode: str,
    ended: str,
    how: str,
) -> None:
    keys = Keys(namespace)
    d = MODES[mode]
    job_id = await ended_job(ended, redis_url, namespace, enqueuer, client, d)
    holder = await enqueuer.enqueue("x", {"a": 3}, delay=60, dedup=d)
    assert holder is not None and holder.dedup is not None and holder.dedup.enqueued
    before = await unreplied(redis, namespace)
    with resent(client.scripts, "move") as firsts, pytest.raises(DedupKeyHeldError) as refused:
        await run_again(client, job_id, how)
    assert firsts == [-2]  # (its re-send answered as the first)
    assert refused.value.holder == holder.id and holder.id in str(refused.value)
    assert isinstance(refused.value, ValueError)
    assert await unreplied(redis, namespace) == before  # (nothing but its reply key written)
    info = await client.job(job_id)
    assert info is not None and info.status == ended
    # once the holder's life ended (its key freed), the job runs again, taking the key
    assert await client.cancel(holder.id) == "cancelled"
    assert await run_again(client, job_id, how)
    assert await held(redis, keys) == ({KEY: job_id}, {job_id: mode + KEY})
    await assert_invariants(redis, namespace)


async def test_held_until_started_a_job_runs_again_once_the_holder_started(
    redis: Redis, redis_url: str, namespace: str, client: Client, enqueuer: Enqueuer
) -> None:
    keys = Keys(namespace)
    job_id = await dead_job(redis_url, namespace, enqueuer, MODES["s"])
    holder = await enqueuer.enqueue("x", {"a": 3}, dedup=MODES["s"])
    assert holder is not None and holder.dedup is not None and holder.dedup.enqueued
    with pytest.raises(DedupKeyHeldError):
        await client.retry_dead_job(job_id)
    await client.scripts.heartbeat("ghost", b"{}", 60_000, mode="register")
    assert await client.scripts.fetch("ghost", int(time.time() * 1000), 1, [("x", 0)])
    assert await client.retry_dead_job(job_id)  # its start freed the key
    assert await held(redis, keys) == ({KEY: job_id}, {job_id: "s" + KEY, holder.id: "S" + KEY})


async def test_a_job_run_again_runs_holding_its_key_until_its_end(
    redis: Redis, redis_url: str, namespace: str, client: Client, enqueuer: Enqueuer
) -> None:
    """until="finished": the job run again holds its key while it runs (a duplicate is
    dropped); its success frees it."""
    keys = Keys(namespace)
    d = MODES["f"]
    job_id = await dead_job(redis_url, namespace, enqueuer, d)
    assert await client.retry_dead_job(job_id)
    pool = WorkerPool.from_url(redis_url, namespace=namespace)
    seen: list[str] = []

    @pool.job("x")
    async def run(job: Job, a: int) -> None:
        dup = await enqueuer.enqueue("x", {"a": 9}, dedup=d)
        assert dup is not None and dup.dedup is not None
        seen.append(f"{job.id} {dup.dedup.status} {dup.dedup.holder}")

    async with pool:
        await pool.drain(timeout=10)
    assert seen == [f"{job_id} dropped {job_id}"]
    assert await held(redis, keys) == ({}, {})
    await assert_invariants(redis, namespace, drained=True)


async def test_retry_all_dead_jobs_skips_a_job_whose_key_is_held(
    redis: Redis, redis_url: str, namespace: str, client: Client, enqueuer: Enqueuer
) -> None:
    keys = Keys(namespace)
    job_id = await dead_job(redis_url, namespace, enqueuer, MODES["f"])
    free = await dead_job(redis_url, namespace, enqueuer, Dedup("other", until="finished"))
    holder = await enqueuer.enqueue("x", {"a": 3}, delay=60, dedup=MODES["f"])
    assert holder is not None
    assert await client.retry_all_dead_jobs() == 1  # the other key's; this one stays dead
    assert [m.decode() for m in await redis.zrange(keys.dead, 0, -1)] == [job_id]
    owners, _records = await held(redis, keys)
    assert owners == {KEY: holder.id, "x:other": free}
    await assert_invariants(redis, namespace)


async def test_a_key_whose_owner_is_gone_is_taken_over(
    redis: Redis, redis_url: str, namespace: str, client: Client, enqueuer: Enqueuer
) -> None:
    """A key whose owner no longer exists (removed by hand) counts as free, as for an
    enqueue."""
    keys = Keys(namespace)
    job_id = await dead_job(redis_url, namespace, enqueuer, MODES["f"])
    gone = await enqueuer.enqueue("x", {"a": 3}, delay=60, dedup=MODES["f"])
    assert gone is not None
    await redis.hdel(keys.jobs, gone.id)
    await redis.zrem(keys.scheduled("x"), gone.id)
    assert await client.retry_dead_job(job_id)
    assert await held(redis, keys) == ({KEY: job_id}, {job_id: "f" + KEY})
    await assert_invariants(redis, namespace)


async def test_a_rerun_left_without_its_owner_takes_the_key_and_refuses_the_move(
    redis: Redis, redis_url: str, namespace: str, client: Client, enqueuer: Enqueuer
) -> None:
    """rerun_latest: the key's owner removed by hand while its rerun waits: the move hands the
    key to the rerun (onto its queue), as an enqueue of the key would, and is refused."""
    keys = Keys(namespace)
    d = MODES["r"]
    job_id = await dead_job(redis_url, namespace, enqueuer, d)
    owner = await enqueuer.enqueue("x", {"a": 3}, dedup=d)
    assert owner is not None
    await client.scripts.heartbeat("ghost", b"{}", 60_000, mode="register")
    assert await client.scripts.fetch("ghost", int(time.time() * 1000), 1, [("x", 0)])
    rerun = await enqueuer.enqueue("x", {"a": 4}, dedup=d)
    assert rerun is not None and rerun.dedup is not None
    assert (rerun.dedup.status, rerun.dedup.holder) == ("rerun_queued", owner.id)
    await redis.hdel(keys.jobs, owner.id)  # (by hand: its record stays, its job is gone)
    with pytest.raises(DedupKeyHeldError) as refused:
        await client.retry_dead_job(job_id)
    assert refused.value.holder == rerun.id
    assert await held(redis, keys) == ({KEY: rerun.id}, {rerun.id: "r" + KEY})
    assert await redis.zscore(keys.queue("x"), rerun.id) is not None
    assert await redis.zscore(keys.dead, job_id) is not None


async def test_a_throttled_job_runs_again_without_touching_its_window(
    redis: Redis, redis_url: str, namespace: str, client: Client, enqueuer: Enqueuer
) -> None:
    """A throttle counts accepted enqueues per window, not jobs: a job run again by hand is
    none; it moves while the window is open and leaves the window to the job that opened it."""
    keys = Keys(namespace)
    d = Dedup("k", throttle=3600)
    job_id = await dead_job(redis_url, namespace, enqueuer, d)
    raw = await redis.hget(keys.jobs, job_id)
    assert raw is not None and b'"x":"tk"' in raw  # (recorded, as every mode)
    assert await redis.get(keys.dedup_window(KEY)) == job_id.encode()
    assert await client.retry_dead_job(job_id)
    assert await redis.zscore(keys.queue("x"), job_id) is not None
    assert await held(redis, keys) == ({}, {})
    assert await redis.get(keys.dedup_window(KEY)) == job_id.encode()
    again = await enqueuer.enqueue("x", {"a": 2}, dedup=d)
    assert again is not None and again.dedup is not None
    assert (again.dedup.status, again.dedup.holder) == ("dropped", job_id)


async def test_a_job_stored_without_its_dedup_runs_again_without_a_key(
    redis: Redis, redis_url: str, namespace: str, client: Client, enqueuer: Enqueuer
) -> None:
    """A job stored by an errands that did not record its Dedup (no ``x``) runs again without
    a key, as that errands ran it: beside the key's holder."""
    keys = Keys(namespace)
    d = MODES["f"]
    job_id = await dead_job(redis_url, namespace, enqueuer, d)
    raw = await redis.hget(keys.jobs, job_id)
    assert raw is not None and b'"x":"fk"' in raw
    await redis.hset(keys.jobs, job_id, raw.replace(b',"x":"fk"', b""))
    holder = await enqueuer.enqueue("x", {"a": 3}, delay=60, dedup=d)
    assert holder is not None
    assert await client.retry_dead_job(job_id)
    assert await held(redis, keys) == ({KEY: holder.id}, {holder.id: "f" + KEY})
    assert await redis.zscore(keys.queue("x"), job_id) is not None
    await assert_invariants(redis, namespace)


async def test_the_record_goes_with_the_job(
    redis: Redis, redis_url: str, namespace: str, client: Client, enqueuer: Enqueuer
) -> None:
    """The Dedup is recorded in the envelope only: a dead job destroyed or trimmed from its set,
    or run again to its success (then its finished record, with a TTL, keeps the envelope),
    leaves nothing of it but what expires."""
    keys = Keys(namespace)
    d = MODES["f"]
    destroyed = await dead_job(redis_url, namespace, enqueuer, d)
    raw = await redis.hget(keys.jobs, destroyed)
    assert raw is not None and b'"x":"fk"' in raw
    assert await client.destroy(destroyed)
    trimmed = await dead_job(redis_url, namespace, enqueuer, d)
    assert await client.scripts.trim_set(keys.dead, int(time.time() * 1000) + 1, 0) == 1
    finished = await dead_job(redis_url, namespace, enqueuer, d)
    pool = WorkerPool.from_url(redis_url, namespace=namespace)

    @pool.job("x")
    async def ok(job: Job, a: int) -> None:
        pass

    assert await client.retry_dead_job(finished)
    async with pool:
        await pool.drain(timeout=10)
    assert await redis.hlen(keys.jobs) == 0
    assert await held(redis, keys) == ({}, {})
    assert await redis.pttl(keys.done(finished)) > 0
    for job_id in (destroyed, trimmed, finished):
        assert await traces(redis, namespace, job_id) == []
    await assert_invariants(redis, namespace, drained=True)


async def traces(redis: Redis, namespace: str, job_id: str) -> list[str]:
    """The keys of ``namespace`` that keep something of job ``job_id`` and do not expire: a
    field, member or item naming it, or a key named after it without a TTL (its tombstone and
    its history, bounded by their own trims, and reply keys left aside)."""
    keys, found = Keys(namespace), []
    bounded = {keys.ended, keys.history, keys.history_data, keys.history_of("x")}
    for key, (kind, content) in (await snapshot(redis, namespace)).items():
        name = key.decode()
        if name in bounded or ":reply:" in name:
            continue
        if kind == b"string":
            items = [name.encode()] if not content[1] else []  # (content: value, has a TTL)
        elif kind == b"hash":
            items = [*content, *content.values()]  # (an owner's id is a value: dedup)
        elif kind == b"zset":
            items = [member for member, _score in content]
        else:
            items = list(content)
        if any(job_id.encode() in item for item in items if isinstance(item, bytes)):
            found.append(name)
    return found


@pytest.mark.parametrize(
    ("mode", "dedup"),
    [
        ("queue", ("z", "x:k")),
        ("queue", ("ff", "x:k")),
        ("queue", ("f", "")),
        ("delete", ("f", "x:k")),
    ],
)
async def test_a_bad_dedup_argument_fails_the_move_before_any_write(
    redis: Redis,
    namespace: str,
    client: Client,
    enqueuer: Enqueuer,
    mode: str,
    dedup: tuple[str, str],
) -> None:
    keys = Keys(namespace)
    job = await enqueuer.enqueue("x", {}, delay=60)
    assert job is not None
    before = await unreplied(redis, namespace)
    with pytest.raises(ResponseError, match="Dedup key"):
        await client.scripts.move(job.id, "x", keys.scheduled("x"), mode, dedup=dedup)
    assert await unreplied(redis, namespace) == before
