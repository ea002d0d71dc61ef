"""Bad input to the Client is refused where it is given, with an error naming the argument,
before anything is stored: update_job's args, reschedule's time, page numbers and counts,
ids and names of the wrong type, result's timeout."""

from __future__ import annotations

import asyncio
import time
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from redis.asyncio import Redis

from errands import Client, Enqueuer, Job
from errands.serialization import SerializationError
from errands.store.keys import Keys


async def _later(enqueuer: Enqueuer) -> Job:
    job = await enqueuer.enqueue("a", {"i": 1}, delay=1000)
    assert job is not None
    return job


# -- update_job: args encoded as enqueue encodes them ------------------------------------------
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), [1, float("-inf")]])
async def test_update_job_refuses_non_finite_args_and_stores_nothing(
    client: Client, enqueuer: Enqueuer, bad: Any
) -> None:
    job = await _later(enqueuer)
    with pytest.raises(SerializationError, match=r"args of job 'a'.*x"):
        await client.update_job(job.id, args={"x": bad})
    info = await client.job(job.id)
    assert info is not None and (info.args, info.edits) == ({"i": 1}, 0)


@pytest.mark.parametrize("bad", [{1, 2}, 2**70, Decimal(1), object()])
async def test_update_job_refuses_what_enqueue_refuses_naming_the_args(
    client: Client, enqueuer: Enqueuer, bad: Any
) -> None:
    job = await _later(enqueuer)
    with pytest.raises(SerializationError, match="args of job 'a' is not JSON-serializable"):
        await enqueuer.enqueue("a", {"x": bad})
    with pytest.raises(SerializationError, match="args of job 'a' is not JSON-serializable"):
        await client.update_job(job.id, args={"x": bad})


async def test_update_job_takes_int_keys_as_enqueue_does(
    client: Client, enqueuer: Enqueuer
) -> None:
    job = await _later(enqueuer)
    enqueued = await enqueuer.enqueue("a", {1: "a"})  # type: ignore[dict-item]
    assert enqueued is not None
    info = await client.update_job(job.id, args={1: "a"})  # type: ignore[dict-item]
    assert info.args == {"1": "a"} == (await client.job(enqueued.id)).args  # type: ignore[union-attr]


async def test_an_edit_keeps_the_unique_lock_with_int_keys(
    client: Client, enqueuer: Enqueuer
) -> None:
    job = await enqueuer.enqueue_unique("a", {"i": 1}, delay=1000)
    assert job is not None
    await client.update_job(job.id, args={2: "b"})  # type: ignore[dict-item]
    again = await enqueuer.enqueue_unique("a", {"2": "b"}, delay=1000)
    assert again is None  # the lock moved to the new args, as enqueue_unique digests them


# -- reschedule(at) ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "at", [None, True, False, timedelta(hours=1), date(2030, 1, 1), "2030-01-01", b"1"]
)
async def test_reschedule_refuses_what_is_not_a_time(
    client: Client, enqueuer: Enqueuer, at: Any
) -> None:
    job = await _later(enqueuer)
    with pytest.raises(TypeError, match="at must be a datetime or epoch seconds"):
        await client.reschedule(job.id, at)
    info = await client.job(job.id)
    assert info is not None and info.status == "scheduled"
    assert info.due_at is not None and info.due_at > time.time() + 900


@pytest.mark.parametrize("at", [float("nan"), float("inf"), -float("inf"), -1, 1e20, 10**30, "ms"])
async def test_reschedule_refuses_nan_inf_and_times_past_the_year_9999(
    client: Client, enqueuer: Enqueuer, at: Any
) -> None:
    job = await _later(enqueuer)
    if at == "ms":
        at = time.time() * 1000  # epoch milliseconds given for seconds
    with pytest.raises(ValueError, match=r"at must be epoch seconds .* year 9999"):
        await client.reschedule(job.id, at)
    info = await client.job(job.id)
    assert info is not None and info.status == "scheduled"


async def test_reschedule_still_takes_datetimes_and_epoch_seconds(
    client: Client, enqueuer: Enqueuer
) -> None:
    job = await _later(enqueuer)
    assert await client.reschedule(job.id, time.time() + 3600)
    info = await client.job(job.id)
    assert info is not None and info.due_at is not None
    assert abs(info.due_at - (time.time() + 3600)) < 60
    assert await client.reschedule(job.id, datetime(9999, 12, 31))
    assert await client.reschedule(job.id, 0)  # the past: queued now
    assert (await client.job(job.id)).status == "queued"  # type: ignore[union-attr]


# -- pages and counts --------------------------------------------------------------------------
LISTERS = ["dead_jobs", "cancelled_jobs", "scheduled_jobs", "retry_jobs", "history"]


@pytest.mark.parametrize("lister", LISTERS)
@pytest.mark.parametrize("page", [2.5, None, "2", True, float("nan")])
async def test_a_bad_page_is_refused_naming_page(client: Client, lister: str, page: Any) -> None:
    with pytest.raises(ValueError, match="page must be an int, got"):
        await getattr(client, lister)(page)


async def test_queued_and_by_status_pages_are_checked(client: Client) -> None:
    with pytest.raises(ValueError, match="page must be an int, got"):
        await client.queued_jobs("a", "2")  # type: ignore[arg-type]
    for status in ("queued", "in_progress", "dead"):
        with pytest.raises(ValueError, match="page must be an int, got"):
            await client.jobs_by_status(status, 1.0)  # type: ignore[arg-type]


@pytest.mark.parametrize("lister", [*LISTERS, "queued"])
async def test_a_page_past_the_end_is_empty_and_carries_the_total(
    client: Client, enqueuer: Enqueuer, lister: str
) -> None:
    await _later(enqueuer)
    for page in (10**6, 10**30):
        if lister == "queued":
            got = await client.queued_jobs("a", page)
        else:
            got = await getattr(client, lister)(page)
        assert got.items == [] and got.page == page
    assert (await client.scheduled_jobs(10**30)).total == 1


@pytest.mark.parametrize("limit", [0, -1, 2.5, None, "3", True, 2**40])
async def test_workflows_and_partitions_refuse_a_bad_limit(client: Client, limit: Any) -> None:
    with pytest.raises(ValueError, match="limit must be an int in 1"):
        await client.workflows(limit)
    with pytest.raises(ValueError, match="limit must be an int in 1"):
        await client.partitions("a", limit)


@pytest.mark.parametrize("offset", [-1, -2, 2.5, None, True, 10**30])
async def test_workflows_refuse_a_bad_offset(client: Client, offset: Any) -> None:
    with pytest.raises(ValueError, match="offset must be an int in 0"):
        await client.workflows(2, offset)


async def test_other_counts_are_checked(client: Client) -> None:
    for bad in (None, 2.5, 0, float("nan"), True):
        with pytest.raises(ValueError, match="max_attempts must be an int"):
            await client.history_job("x", bad)
        with pytest.raises(ValueError, match="minutes must be an int"):
            await client.throughput(bad)
        with pytest.raises(ValueError, match="limit must be an int"):
            await client.find_job_ids("x", bad)
    for prefix in (None, 5):
        with pytest.raises(TypeError, match="prefix must be a str"):
            await client.find_job_ids(prefix)  # type: ignore[arg-type]


# -- ids, names, namespaces --------------------------------------------------------------------
@pytest.mark.parametrize("bad", [None, 5, b"abc", ["x"]])
async def test_an_id_of_the_wrong_type_is_a_type_error_naming_it(client: Client, bad: Any) -> None:
    calls = [
        client.job(bad),
        client.cancel(bad),
        client.destroy(bad),
        client.reschedule(bad, 0),
        client.update_job(bad, priority=1),
        client.retry_dead_job(bad),
        client.run_scheduled_now(bad),
        client.delete_dead_job(bad),
        client.history_job(bad),
        client.result(bad, 0.1),
    ]
    for call in calls:
        with pytest.raises(TypeError, match="job id must be a non-empty string, got"):
            await call
    with pytest.raises(TypeError, match="workflow run id must be a non-empty string, got"):
        await client.workflow(bad).status()


@pytest.mark.parametrize("bad", ["", "a{b}", "a\nb"])
async def test_retry_dead_job_refuses_an_invalid_id_as_the_others_do(
    client: Client, bad: str
) -> None:
    for method in (client.retry_dead_job, client.cancel, client.job):
        with pytest.raises(ValueError, match="job id"):
            await method(bad)


def test_a_namespace_of_the_wrong_type_is_a_type_error() -> None:
    for bad in (5, None, b"ns"):
        with pytest.raises(TypeError, match="namespace must be a non-empty string, got"):
            Keys(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["", "a b", None, 5])
async def test_names_are_checked_by_unpause_queued_jobs_and_history(
    redis: Redis, namespace: str, client: Client, bad: Any
) -> None:
    await client.pause("a")
    with pytest.raises(ValueError, match="invalid job name"):
        await client.unpause(bad)
    with pytest.raises(ValueError, match="invalid job name"):
        await client.queued_jobs(bad)
    if bad is not None:  # (None is every name's history)
        with pytest.raises(ValueError, match="invalid job name"):
            await client.history(1, bad)
        with pytest.raises(ValueError, match="invalid job name"):
            await client.history_count(bad)
    assert await client.paused() == {"a"}


# -- result(timeout) ---------------------------------------------------------------------------
@pytest.mark.parametrize("timeout", [float("nan"), float("inf"), -1, "1", True])
async def test_result_refuses_a_bad_timeout_at_once(
    client: Client, enqueuer: Enqueuer, timeout: Any
) -> None:
    job = await _later(enqueuer)
    for wait in (client.result(job.id, timeout), enqueuer.result(job.id, timeout)):
        with pytest.raises(ValueError, match="timeout must be a number of seconds"):
            await asyncio.wait_for(wait, 5)
    with pytest.raises(ValueError, match="timeout must be a number of seconds"):
        await asyncio.wait_for(job.result(timeout), 5)


async def test_result_takes_a_timedelta_and_zero(client: Client, enqueuer: Enqueuer) -> None:
    job = await _later(enqueuer)
    with pytest.raises(TimeoutError, match=r"waited 0\.1s"):
        await client.result(job.id, timedelta(seconds=0.1))  # type: ignore[arg-type]
    with pytest.raises(TimeoutError):
        await client.result(job.id, 0)


def test_from_url_refuses_a_url_of_the_wrong_type() -> None:
    for bad in (None, 5, b"redis://x"):
        with pytest.raises(TypeError, match="url must be a str"):
            Client.from_url(bad)  # type: ignore[arg-type]


def test_the_sync_enqueuer_refuses_a_bad_timeout_or_id_at_once(
    redis_url: str, namespace: str
) -> None:
    from errands.sync.enqueuer import SyncEnqueuer

    se = SyncEnqueuer.from_url(redis_url, namespace=namespace, strict=None)
    try:
        job = se.enqueue("a", {}, delay=1000)
        assert job is not None
        started = time.monotonic()
        with pytest.raises(ValueError, match="timeout must be a number of seconds"):
            se.result(job.id, timeout=float("nan"))
        with pytest.raises(TypeError, match="job id must be a non-empty string, got int 5"):
            se.result(5, timeout=0.1)  # type: ignore[arg-type]
        assert time.monotonic() - started < 5
    finally:
        se.close()
