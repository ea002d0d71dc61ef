"""The SyncEnqueuer has the Enqueuer's methods without await and takes the same options
(docs/enqueueing.md, "From sync code"): the same parameters, and each of them reaches Redis."""

from __future__ import annotations

import inspect
from collections.abc import Iterator

import pytest
from redis.asyncio import Redis

from errands import Dedup, Enqueuer, SyncEnqueuer
from errands.store.keys import Keys

# the Enqueuer's public coroutine methods that the SyncEnqueuer has without await
SHARED = {"enqueue", "enqueue_many", "enqueue_unique", "result"}
# and those it has not: aclose is close() here; a WorkflowRun's methods are coroutines bound to
# the connections of the Enqueuer's loop (the SyncEnqueuer's private one), so no sync wrapper
NOT_SYNC = {"aclose", "enqueue_workflow"}


@pytest.fixture
def sync(redis_url: str, namespace: str) -> Iterator[SyncEnqueuer]:
    with SyncEnqueuer.from_url(redis_url, namespace=namespace, strict=None) as e:
        yield e


def test_the_enqueuers_public_methods_are_all_accounted_for() -> None:
    public = {
        name
        for name, f in inspect.getmembers(Enqueuer, inspect.iscoroutinefunction)
        if not name.startswith("_")
    }
    assert public == SHARED | NOT_SYNC, "a new Enqueuer method: give SyncEnqueuer one too"


@pytest.mark.parametrize("method", sorted(SHARED))
def test_each_shared_method_takes_the_same_parameters(method: str) -> None:
    ours = inspect.signature(getattr(SyncEnqueuer, method))
    theirs = inspect.signature(getattr(Enqueuer, method))
    assert list(ours.parameters.values()) == list(theirs.parameters.values())
    assert ours.return_annotation == theirs.return_annotation


async def test_a_partitioned_enqueue_lands_in_its_partition(
    sync: SyncEnqueuer, redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    job = sync.enqueue("sms", {"to": "a"}, partition="customer-7")
    plain = sync.enqueue("sms", {"to": "b"})
    assert job is not None and job.partition == "customer-7"
    assert plain is not None and plain.partition is None
    assert await redis.hget(keys.partitions, job.id) == b"customer-7"
    assert await redis.hget(keys.partitions, plain.id) is None
    assert await redis.zscore(keys.partitions_ready("sms"), "customer-7") is not None


async def test_enqueue_unique_uses_the_job_id_and_partition_given(
    sync: SyncEnqueuer, redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    job = sync.enqueue_unique("report", {"day": 1}, job_id="report-day-1", partition="p1")
    assert job is not None and job.id == "report-day-1" and not job.existed
    assert await redis.hexists(keys.jobs, "report-day-1")
    assert await redis.hget(keys.partitions, "report-day-1") == b"p1"
    # the same id again, under another unique key: the id is taken, nothing stored
    again = sync.enqueue_unique("report", {"day": 2}, job_id="report-day-1")
    assert again is not None and again.existed
    assert await redis.zcard(keys.queue("report")) == 1


async def test_a_dedup_enqueue_reports_its_outcome_and_a_drop_names_the_holder(
    sync: SyncEnqueuer, redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    first = sync.enqueue("sync_user", {"v": 1}, dedup=Dedup("user:7"))
    assert first is not None and first.dedup is not None and first.dedup.enqueued
    second = sync.enqueue("sync_user", {"v": 2}, dedup=Dedup("user:7"))
    assert second is not None and second.dedup is not None
    assert (second.dedup.status, second.dedup.holder) == ("dropped", first.id)
    assert second.id == first.id
    assert await redis.hlen(keys.jobs) == 1
    assert await redis.hget(keys.dedup, "sync_user:user:7") == first.id.encode()
