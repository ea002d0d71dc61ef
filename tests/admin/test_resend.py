"""The admin scripts re-sent (redis-py sends a call again, with the same KEYS and ARGV, when its
reply was lost): the second call leaves the same state and gives the same answer as the first,
so the Client's answer is the one of the call that did the work. And a bad argument is an error
before anything is written."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from errands import Client, Enqueuer, Job, JobCancelledError, JobStatus, WorkerPool, Workflow
from errands.store.keys import Keys
from errands.store.scripts import Scripts, Settle
from tests.admin.test_atomic_jobs import Events
from tests.support.client_env import until
from tests.support.fetched import POOL, running_job
from tests.support.invariants import assert_invariants


@contextmanager
def resent(
    scripts: Scripts, name: str, between: Callable[[], Awaitable[None]] | None = None
) -> Iterator[list[Any]]:
    """Every call of script ``name`` runs twice, as when its first reply is lost (``between``
    runs before the re-send); the caller gets the second answer. Yields the first answers."""
    original = scripts._s[name]
    firsts: list[Any] = []

    async def twice(keys: list[Any], args: list[Any]) -> Any:
        firsts.append(await original(keys=keys, args=args))
        if between is not None:
            await between()
        return await original(keys=keys, args=args)

    scripts._s[name] = twice  # type: ignore[assignment]
    try:
        yield firsts
    finally:
        scripts._s[name] = original


async def history(redis: Redis, keys: Keys, job_id: str) -> list[str]:
    members = await redis.zrange(keys.history_of("sync"), 0, -1)
    return sorted(m.decode() for m in members if job_id in str(m))


async def test_an_update_resent_is_recorded_once(
    redis: Redis, namespace: str, client: Client, enqueuer: Enqueuer
) -> None:
    """The re-sent update_job found the envelope changed (by its own first call) and answered
    0: the Client looked again and made a second edit, recorded as a second ``edited``."""
    keys = Keys(namespace)
    job = await enqueuer.enqueue("sync", {"n": 1})
    assert job is not None
    with resent(client.scripts, "update_job") as firsts:
        info = await client.update_job(job.id, args={"n": 2}, priority=3)
    assert firsts == [1]
    assert (info.args, info.priority, info.edits) == ({"n": 2}, 3, 1)
    assert await history(redis, keys, job.id) == [f"{job.id}:e1"]
    assert [h.status for h in await client.history_job(job.id)] == ["edited"]
    await assert_invariants(redis, namespace)


async def test_an_update_whose_job_ran_before_the_resend_is_reported_edited(
    redis: Redis, redis_url: str, namespace: str, client: Client, enqueuer: Enqueuer
) -> None:
    """The re-send arrives after the edited job ran and finished (its envelope gone): it
    answered 0, and the Client, looking again, raised "is finished: only waiting or dead jobs
    can be edited" for an edit that was made, and ran."""
    pool = WorkerPool.from_url(redis_url, namespace=namespace)

    @pool.job("sync")
    async def sync(job: Job, n: int) -> int:
        return n

    async def run() -> None:
        async with pool:
            await pool.drain(timeout=10)

    job = await enqueuer.enqueue("sync", {"n": 1})
    assert job is not None
    with resent(client.scripts, "update_job", between=run) as firsts:
        info = await client.update_job(job.id, args={"n": 2})
    assert firsts == [1]
    assert (info.status, info.result) == (JobStatus.FINISHED, 2)
    assert [h.status for h in await client.history_job(job.id)] == ["edited", "finished"]
    await assert_invariants(redis, namespace, drained=True)


@pytest.mark.parametrize("bad", ["priority", "now"])
async def test_an_update_with_a_bad_number_writes_nothing(
    redis: Redis, namespace: str, client: Client, enqueuer: Enqueuer, bad: str
) -> None:
    """A priority or a time that is not a number raised after the envelope was replaced."""
    keys = Keys(namespace)
    job = await enqueuer.enqueue("sync", {"n": 1})
    assert job is not None
    old = await redis.hget(keys.jobs, job.id)
    assert old is not None
    call = [keys.jobs, keys.priorities, keys.queue("sync"), keys.history_data]
    call += [keys.history_of("sync"), keys.partitions, keys.seq]
    call += [keys.partition_queue("sync"), keys.partitions_ready("sync")]
    call += [keys.unique, keys.unique_of_job, keys.unique_expiry]
    prio, now = ("x", 5) if bad == "priority" else (2, "x")
    args = [job.id, old, b'{"new":1}', prio, "1", f"{job.id}:e1", b"{}", now, "", ""]
    with pytest.raises(ResponseError) as raised:
        await client.scripts._call("update_job", call, args)
    assert await redis.hget(keys.jobs, job.id) == old
    assert await redis.hget(keys.priorities, job.id) is None
    assert await history(redis, keys, job.id) == []
    assert "errands: update_job" in str(raised.value)


async def dead_job(redis: Redis, enqueuer: Enqueuer, name: str = "sync") -> str:
    """A job of ``name`` in the dead set (as a failure for good leaves it)."""
    keys = enqueuer.keys
    job = await enqueuer.enqueue(name, {"n": 1})
    assert job is not None
    assert await redis.zrem(keys.queue(name), job.id) == 1
    await redis.zadd(keys.dead, {job.id: 1})
    return job.id


async def test_a_dead_job_retried_by_a_resent_call_is_reported_queued(
    redis: Redis, namespace: str, client: Client, enqueuer: Enqueuer
) -> None:
    """The re-sent move found the job out of the dead set (its own first call queued it) and
    answered 0: retry_dead_job said False although the job was queued."""
    keys = Keys(namespace)
    job_id = await dead_job(redis, enqueuer)
    with resent(client.scripts, "move") as firsts:
        assert await client.retry_dead_job(job_id)
    assert firsts == [1]
    assert [m.decode() for m in await redis.zrange(keys.queue("sync"), 0, -1)] == [job_id]
    await assert_invariants(redis, namespace)


@pytest.mark.parametrize("action", ["retry_dead_job", "run_scheduled_now"])
async def test_a_job_queued_and_run_before_the_resend_is_reported_queued(
    redis: Redis, redis_url: str, namespace: str, client: Client, enqueuer: Enqueuer, action: str
) -> None:
    """The re-send arrives after the timeout of the first: the job ran and finished meanwhile
    (with the new envelope of a retried dead job, or with its own)."""
    pool = WorkerPool.from_url(redis_url, namespace=namespace)

    @pool.job("sync")
    async def sync(job: Job, n: int) -> int:
        return n

    async def run() -> None:
        async with pool:
            await pool.drain(timeout=10)

    if action == "retry_dead_job":
        job_id = await dead_job(redis, enqueuer)
    else:
        job = await enqueuer.enqueue("sync", {"n": 1}, delay=60)
        assert job is not None
        job_id = job.id
    with resent(client.scripts, "move", between=run):
        assert await getattr(client, action)(job_id)
    assert await client.result(job_id, timeout=1) == 1
    await assert_invariants(redis, namespace, drained=True)


async def test_a_scheduled_job_run_now_by_a_resent_call_is_reported_queued(
    redis: Redis, namespace: str, client: Client, enqueuer: Enqueuer
) -> None:
    keys = Keys(namespace)
    job = await enqueuer.enqueue("sync", {"n": 1}, delay=60)
    assert job is not None
    with resent(client.scripts, "move") as firsts:
        assert await client.run_scheduled_now(job.id)
    assert firsts == [1]
    assert [m.decode() for m in await redis.zrange(keys.queue("sync"), 0, -1)] == [job.id]
    await assert_invariants(redis, namespace)


async def test_a_dead_job_rescheduled_by_a_resent_call_is_reported_scheduled(
    redis: Redis, namespace: str, client: Client, enqueuer: Enqueuer
) -> None:
    keys = Keys(namespace)
    job_id = await dead_job(redis, enqueuer)
    at = client.clock.now() + 60
    with resent(client.scripts, "move") as firsts:
        assert await client.reschedule(job_id, at)
    assert firsts == [1]
    assert await redis.zscore(keys.scheduled("sync"), job_id) == int(at * 1000)
    await assert_invariants(redis, namespace)


async def test_a_move_to_a_bad_time_writes_nothing(
    redis: Redis, namespace: str, client: Client, enqueuer: Enqueuer
) -> None:
    """A due time that is not a number raised after the job left its set: it was in none."""
    keys = Keys(namespace)
    job_id = await dead_job(redis, enqueuer)
    with pytest.raises(ResponseError) as raised:
        await client.scripts.move(job_id, "sync", keys.dead, "schedule", "soon")  # type: ignore[arg-type]
    assert await redis.zscore(keys.dead, job_id) == 1
    assert "errands: move" in str(raised.value)
    await assert_invariants(redis, namespace)


async def test_a_cancel_resent_says_cancelled(
    redis: Redis, namespace: str, client: Client, enqueuer: Enqueuer
) -> None:
    """The re-send found the job in the cancelled set (put there by its first call) and said
    ``already``."""
    job = await enqueuer.enqueue("sync", {"n": 1})
    assert job is not None
    with resent(client.scripts, "cancel") as firsts:
        assert await client.cancel(job.id) == "cancelled"
    assert firsts == [b"cancelled"]
    assert [h.status for h in await client.history_job(job.id)] == ["cancelled"]
    await assert_invariants(redis, namespace)


async def test_a_cancel_of_a_running_job_resent_says_running(
    redis: Redis, namespace: str, client: Client
) -> None:
    """Its pool cancelled the job between the first send and the re-send, which said
    ``already`` of the job this call had cancelled."""
    keys, job_id = await running_job(redis, namespace)

    async def pool_cancels() -> None:
        s = Settle(job_id, "work", "cancelled", keys.cancelled, 1, 1, token="1")
        s.score_ms, s.ttl_ms, s.counter = 1, 60_000, "cancelled"
        assert await client.scripts.settle(POOL, s)

    with resent(client.scripts, "cancel", between=pool_cancels) as firsts:
        assert await client.cancel(job_id) == "running"
    assert firsts == [b"running"]
    assert await redis.zscore(keys.cancelled, job_id) is not None
    await assert_invariants(redis, namespace)


@pytest.mark.parametrize("resend", [False, True])
async def test_a_waiting_workflow_member_cancelled_is_recorded_and_published(
    redis: Redis, namespace: str, client: Client, enqueuer: Enqueuer, resend: bool
) -> None:
    """A member waiting for its dependencies ended without a history record, an event or a
    done record (and a re-send, finding no trace of it, said ``unknown``: JobNotFoundError)."""
    wf = Workflow()
    wf.add("sync", {"n": 1}, id="a")
    wf.add("sync", {"n": 2}, id="b", after=["a"], on_dependency_failure="ignore", priority=4)
    wf.add("sync", {"n": 3}, id="c", after=["a"], partition="p1")
    run = await enqueuer.enqueue_workflow(wf)
    member = run.job_id("b")
    assert (await client._require(member)).status == JobStatus.WAITING
    events = Events(client)
    async with events:
        if resend:
            with resent(client.scripts, "cancel") as firsts:
                assert await client.cancel(member) == "cancelled"
            assert firsts == [b"cancelled"]
        else:
            assert await client.cancel(member) == "cancelled"
        await until(lambda: events.of(member))
    assert events.of(member) == ["cancelled"]
    assert [(h.attempt, h.status, h.args) for h in await client.history_job(member)] == [
        (1, "cancelled", {"n": 2})
    ]
    with pytest.raises(JobCancelledError):
        await client.result(member, timeout=1)
    info = await client._require(member)
    assert (info.status, info.priority) == (JobStatus.CANCELLED, 4)
    assert await redis.hget(Keys(namespace).priorities, member) == b"4"  # as when queued
    assert (await run.status()).nodes["b"].state == "cancelled"
    assert await client.cancel(run.job_id("c")) == "cancelled"  # its partition, as when queued
    assert await redis.hget(Keys(namespace).partitions, run.job_id("c")) == b"p1"
    await assert_invariants(redis, namespace)


@pytest.mark.parametrize("bad", ["now", "ttl"])
async def test_a_cancel_with_a_bad_number_writes_nothing(
    redis: Redis, namespace: str, client: Client, enqueuer: Enqueuer, bad: str
) -> None:
    """A time or TTL that is not a number raised after the job left its queue."""
    keys = Keys(namespace)
    job = await enqueuer.enqueue("sync", {"n": 1})
    assert job is not None
    now, ttl = ("x", 1000) if bad == "now" else (1000, "x")
    with pytest.raises(ResponseError) as raised:
        await client.scripts.cancel(job.id, "sync", now, ttl)  # type: ignore[arg-type]
    assert [m.decode() for m in await redis.zrange(keys.queue("sync"), 0, -1)] == [job.id]
    assert await redis.zcard(keys.cancelled) == 0
    assert "errands: cancel" in str(raised.value)
    await assert_invariants(redis, namespace)


async def test_a_destroy_resent_says_destroyed(
    redis: Redis, namespace: str, client: Client, enqueuer: Enqueuer
) -> None:
    """The re-send found no trace of the job (its first call removed them all) and said
    ``unknown``: Client.destroy returned False."""
    job_id = await dead_job(redis, enqueuer)
    with resent(client.scripts, "destroy") as firsts:
        assert await client.destroy(job_id)
    assert firsts == [b"destroyed"]
    assert await client.job(job_id) is None
    await assert_invariants(redis, namespace)


async def test_a_delete_resent_says_deleted(
    redis: Redis, namespace: str, client: Client, enqueuer: Enqueuer
) -> None:
    """The re-send found the job out of the dead set (its first call deleted it) and answered
    0: delete_dead_job returned False."""
    job_id = await dead_job(redis, enqueuer)
    with resent(client.scripts, "move") as firsts:
        assert await client.delete_dead_job(job_id)
    assert firsts == [1]
    assert [h.status for h in await client.history_job(job_id)] == ["deleted"]
    assert not await client.delete_dead_job(job_id)  # (a later call: nothing to delete)
    assert not await client.delete_dead_job("nope")
    queued = await enqueuer.enqueue("sync", {"n": 2})
    assert queued is not None and not await client.delete_dead_job(queued.id)
    await assert_invariants(redis, namespace)
