"""Issue 15: what a finished job leaves in Redis. A job acknowledged with a result record kept at
least an hour gets no tombstone (the record blocks a new enqueue of its id as well, and a
tombstone cost as much memory again); its id stays taken, and a re-sent ack is still no
refusal. Its record is kept once, compact: in the history, the result record naming its
attempt, until the history's trim moves it into the result record."""

from __future__ import annotations

from typing import Any

import orjson
from redis.asyncio import Redis

from errands import Enqueuer, Job, JobStatus
from errands.store.scripts import Acked, Scripts
from tests.support.client_env import Env
from tests.support.fetched import POOL, running_job
from tests.support.invariants import assert_invariants

HOUR_MS = 3_600_000


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


async def test_an_ack_fenced_out_is_refused_without_a_record(redis: Redis, namespace: str) -> None:
    keys, job_id = await running_job(redis, namespace)
    stale = Acked(job_id, "work", b"7", 1, HOUR_MS, 1, token="0")  # another attempt's
    assert await Scripts(redis, keys).ack(POOL, [stale], False, 2, True) == [job_id]
    assert await redis.exists(keys.done(job_id)) == 0


# -- the finished record: once, in the history; the result record names its attempt ---------
def ok_env(redis: Redis, namespace: str, **options: Any) -> Env:
    env = Env(redis, namespace, **options)

    @env.pool.job("ok")
    async def ok(job: Job) -> dict[str, Any]:
        return {"doubled": job.args["x"] * 2}

    return env


async def test_the_result_record_names_the_attempt_the_history_holds(
    redis: Redis, namespace: str
) -> None:
    env = ok_env(redis, namespace)
    job = await env.enqueuer.enqueue("ok", {"x": 21})
    assert job is not None
    await env.pool.drain(timeout=5)
    k = env.keys
    assert await redis.get(k.done(job.id)) == b"1"
    assert 86_300_000 < await redis.pttl(k.done(job.id)) <= 86_400_000
    stored = orjson.loads(await redis.hget(k.history_data, f"{job.id}:1"))
    assert set(stored) == {"j", "r", "b", "e", "a"} and stored["r"] == {"doubled": 42}
    info = await env.client.job(job.id)
    assert info is not None and info.status == JobStatus.FINISHED
    assert (info.id, info.args, info.result) == (job.id, {"x": 21}, {"doubled": 42})
    assert info.started_at is not None and info.finished_at is not None
    assert await job.result(timeout=1) == {"doubled": 42}
    assert await env.client.cancel(job.id) == "finished"
    [entry] = await env.client.history_job(job.id)
    assert (entry.id, entry.name, entry.status, entry.attempt) == (job.id, "ok", "finished", 1)
    assert (entry.args, entry.result) == ({"x": 21}, {"doubled": 42})
    assert (await env.client.history()).items == [entry]
    await assert_invariants(redis, namespace)


async def test_a_trimmed_attempt_moves_into_the_result_record(redis: Redis, namespace: str) -> None:
    env = ok_env(redis, namespace, history_max=1)
    first = await env.enqueuer.enqueue("ok", {"x": 1})
    await env.pool.drain(timeout=5)
    env.clock.advance(1)
    second = await env.enqueuer.enqueue("ok", {"x": 2})
    await env.pool.drain(timeout=5)
    assert first is not None and second is not None
    k = env.keys
    ttl = await redis.pttl(k.done(first.id))
    async with env.pool:
        assert env.pool.requeuer is not None
        await env.pool.requeuer.collect_garbage()
    assert await env.client.history_job(first.id) == []
    assert 0 < ttl - await redis.pttl(k.done(first.id)) < 60_000  # the TTL it had left
    assert orjson.loads(await redis.get(k.done(first.id)))["r"] == {"doubled": 2}
    info = await env.client.job(first.id)
    assert info is not None and (info.status, info.args) == (JobStatus.FINISHED, {"x": 1})
    assert await first.result(timeout=1) == {"doubled": 2}
    assert await env.client.cancel(first.id) == "finished"
    assert await redis.get(k.done(second.id)) == b"1"  # kept in the history
    # a re-sent trim of the same attempt changes nothing
    assert await env.pool.requeuer.scripts.trim_history(["ok"], [f"{first.id}:1"]) == 1
    assert orjson.loads(await redis.get(k.done(first.id)))["r"] == {"doubled": 2}
    await assert_invariants(redis, namespace)


async def test_without_history_the_result_record_holds_the_record(
    redis: Redis, namespace: str
) -> None:
    env = ok_env(redis, namespace, history=False)
    job = await env.enqueuer.enqueue("ok", {"x": 4})
    await env.pool.drain(timeout=5)
    assert job is not None
    assert orjson.loads(await redis.get(env.keys.done(job.id)))["r"] == {"doubled": 8}
    info = await env.client.job(job.id)
    assert info is not None and (info.status, info.result) == (JobStatus.FINISHED, {"doubled": 8})
    assert await job.result(timeout=1) == {"doubled": 8}
    assert await redis.hlen(env.keys.history_data) == 0


async def test_records_of_the_previous_layout_are_read_and_trimmed_alike(
    redis: Redis, namespace: str
) -> None:
    """A job that finished before the upgrade (long records, a tombstone) reads as before, its
    result record outlives the trim of its history; a job enqueued before the upgrade runs and
    finishes in the new layout."""
    env = ok_env(redis, namespace, history_max=1)
    k, now = env.keys, int(env.clock.now() * 1000)
    old_id, env_json = "old-job", b'{"n":"ok","a":{"x":3},"t":1.5}'
    record = b'{"id":"old-job","status":"finished","job":' + env_json
    record += b',"result":{"doubled":6},"started":%d,"finished":%d,"attempt":1}' % (now, now)
    await redis.set(k.done(old_id), record, px=86_400_000)
    await redis.hset(k.history_data, f"{old_id}:1", record)
    await redis.zadd(k.history, {f"{old_id}:1": now})  # (the global index of old versions)
    await redis.zadd(k.history_of("ok"), {f"{old_id}:1": now})
    await redis.zadd(k.ended, {old_id: now})
    waiting = await env.enqueuer.enqueue("ok", {"x": 5})  # (its envelope is as it was)
    assert waiting is not None
    info = await env.client.job(old_id)
    assert info is not None and (info.status, info.args) == (JobStatus.FINISHED, {"x": 3})
    assert [h.result for h in await env.client.history_job(old_id)] == [{"doubled": 6}]
    env.clock.advance(1)
    await env.pool.drain(timeout=5)
    async with env.pool:
        assert env.pool.requeuer is not None
        await env.pool.requeuer.collect_garbage()  # history_max=1: the old attempt goes
    assert await redis.get(k.done(old_id)) == record
    assert await env.client.history_job(old_id) == []
    again = await env.enqueuer.enqueue("ok", {"x": 3}, job_id=old_id)
    assert again is not None and again.existed
    assert await waiting.result(timeout=1) == {"doubled": 10}
    assert await redis.get(k.done(waiting.id)) == b"1"
    await assert_invariants(redis, namespace)


# -- one index: the history of each job name; the listing of all merges them ---------------
async def test_the_history_of_every_name_is_merged_newest_first(
    redis: Redis, namespace: str
) -> None:
    env = ok_env(redis, namespace, history_max=30)

    @env.pool.job("other")
    async def other(job: Job) -> None:
        return None

    for i in range(25):
        await env.enqueuer.enqueue("ok" if i % 3 else "other", {"x": i})
        await env.pool.drain(timeout=5)
        env.clock.advance(1)
    assert await redis.exists(env.keys.history) == 0  # no global index is written
    first, second = await env.client.history(1), await env.client.history(2)
    assert (first.total, len(first.items), len(second.items)) == (25, 20, 5)
    assert [h.args["x"] for h in first.items + second.items] == list(range(24, -1, -1))
    assert await env.client.history_count() == 25
    assert await env.client.history_count("other") == 9
    per_name = await env.client.history(1, job_name="other")
    assert [h.args["x"] for h in per_name.items] == list(range(24, -1, -3))
    minutes = await env.client.throughput(minutes=2)
    assert sum(done for _start, done, _dead in minutes) == 25
    # six more: the oldest over both names go (history_max=30)
    for i in range(25, 31):
        await env.enqueuer.enqueue("other", {"x": i})
    await env.pool.drain(timeout=5)
    async with env.pool:
        assert env.pool.requeuer is not None
        await env.pool.requeuer.collect_garbage()
    page = await env.client.history(2)
    assert page.total == 30 and [h.args["x"] for h in page.items][-1] == 1
    await assert_invariants(redis, namespace)


async def test_the_global_index_of_older_versions_is_drained_by_the_trim(
    redis: Redis, namespace: str
) -> None:
    env = ok_env(redis, namespace, history_max=2)
    k, now = env.keys, int(env.clock.now() * 1000)
    await redis.sadd(k.names, "ok")
    for i in range(3):  # three attempts recorded by an older version: in both indexes
        member = f"old{i}:1"
        record = b'{"id":"old%d","status":"finished","job":{"n":"ok","a":{"x":%d},"t":1},' % (i, i)
        await redis.hset(k.history_data, member, record + b'"result":null,"attempt":1}')
        await redis.zadd(k.history, {member: now + i})
        await redis.zadd(k.history_of("ok"), {member: now + i})
    assert [h.id for h in (await env.client.history()).items] == ["old2", "old1", "old0"]
    async with env.pool:
        assert env.pool.requeuer is not None
        await env.pool.requeuer.collect_garbage()
    assert [h.id for h in (await env.client.history()).items] == ["old2", "old1"]
    assert {m.decode() for m in await redis.zrange(k.history, 0, -1)} == {"old1:1", "old2:1"}
    await assert_invariants(redis, namespace)
