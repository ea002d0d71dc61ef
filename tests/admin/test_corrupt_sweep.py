"""The sweep of the Client's reads over bad stored data: a realistic namespace (see
tests/support/corrupt.py), one value corrupted at a time, then every read of the Client. None
raises: a listing shows the bad entry as corrupt or skips it, a count reads it as 0. A key of
another type may fail the reads of that key, with an error naming it, and no other read."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from redis.asyncio import Redis

from errands import Client
from errands.admin.jobinfo import JobStatus
from tests.support.corrupt import (
    CORRUPTIONS,
    WRONG_TYPES,
    Corruption,
    Template,
    build_template,
    copy,
)

Read = Callable[[Client, Template], Awaitable[Any]]


def _reads() -> dict[str, Read]:
    reads: dict[str, Read] = {
        "job_names": lambda c, t: c.job_names(),
        "paused": lambda c, t: c.paused(),
        "queues": lambda c, t: c.queues(),
        "queue_sizes": lambda c, t: c.queue_sizes(),
        "count_by_status": lambda c, t: c.count_by_status(),
        "dead_count": lambda c, t: c.dead_count(),
        "stats": lambda c, t: c.stats(),
        "throughput": lambda c, t: c.throughput(5),
        "worker_pools": lambda c, t: c.worker_pools(),
        "workers": lambda c, t: c.workers(),
        "history": lambda c, t: c.history(),
        "history[ok]": lambda c, t: c.history(1, "ok"),
        "history_count": lambda c, t: c.history_count(),
        "schedules": lambda c, t: c.schedules(),
        "schedule": lambda c, t: c.schedule("nightly"),
        "limits": lambda c, t: c.limits(),
        "partitions": lambda c, t: c.partitions("parked"),
        "activity": lambda c, t: c.activity("hour"),
        "activity_day": lambda c, t: c.activity("day"),
        "outbox": lambda c, t: c.outbox(),
        "workflows": lambda c, t: c.workflows(),
        "workflow": lambda c, t: c.workflow(t.run).status(),
        "queued_jobs": lambda c, t: c.queued_jobs("parked"),
        "queued_jobs[ok]": lambda c, t: c.queued_jobs("ok"),
        "find_job_ids": lambda c, t: c.find_job_ids(t.ids["ok"][:4]),
        "redis_info": lambda c, t: c.redis_info(),
    }
    for status in JobStatus.ALL:
        if status != JobStatus.FINISHED:
            reads[f"jobs_by_status[{status}]"] = lambda c, t, s=status: c.jobs_by_status(s)
    for what in ("ok", "dead", "retry", "running", "scheduled", "queued"):
        reads[f"job[{what}]"] = lambda c, t, w=what: c.job(t.ids[w])
        reads[f"history_job[{what}]"] = lambda c, t, w=what: c.history_job(t.ids[w])
    reads["job[member b]"] = lambda c, t: c.job(f"{t.run}:b")
    return reads


READS = _reads()


@pytest.fixture(scope="module")
def template(redis_url: str) -> Iterator[Template]:
    yield build_template(redis_url)


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[Redis]:
    r = Redis.from_url(redis_url)
    yield r
    await r.aclose()


async def _sweep(raw: Redis, template: Template, corruption: Corruption | None) -> dict[str, Any]:
    namespace = "cs" + uuid.uuid4().hex[:10]
    keys = await copy(raw, template, namespace)
    if corruption is not None:
        await corruption.apply(raw, keys, template)
    out: dict[str, Any] = {}
    async with Client(raw, namespace=namespace) as client:
        for name, read in READS.items():
            try:
                out[name] = await read(client, template)
            except Exception as exc:
                out[name] = exc
    return out


def _failures(results: dict[str, Any]) -> dict[str, str]:
    return {n: f"{type(r).__name__}: {r}" for n, r in results.items() if isinstance(r, Exception)}


async def test_the_template_reads_cleanly(raw: Redis, template: Template) -> None:
    results = await _sweep(raw, template, None)
    assert _failures(results) == {}
    counts = results["count_by_status"]
    assert counts[JobStatus.DEAD] == 1 and counts[JobStatus.RETRYING] == 1
    assert counts[JobStatus.IN_PROGRESS] == 1 and counts[JobStatus.SCHEDULED] == 1
    assert [w.job_id for w in results["workers"]] == [template.ids["running"]]
    assert results["job[running]"].status == JobStatus.IN_PROGRESS
    assert results["job[queued]"].status == JobStatus.QUEUED
    assert results["history"].total >= 4 and len(results["schedules"]) == 1
    assert {q.name: q.max_concurrency for q in results["queues"]}["part"] == 3


# a corrupt schedule definition is left out of the listing (skipped), and then schedule(name)
# says there is none (left as it is: see the sweep's report)
EXPECTED = {("schedule", "periodic["): "ScheduleNotFoundError"}


@pytest.mark.parametrize("corruption", CORRUPTIONS, ids=[c.id for c in CORRUPTIONS])
async def test_no_read_raises_on_a_corrupt_value(
    raw: Redis, template: Template, corruption: Corruption
) -> None:
    failures = _failures(await _sweep(raw, template, corruption))
    for (read, prefix), error in EXPECTED.items():
        if corruption.id.startswith(prefix) and failures.get(read, "").startswith(error):
            del failures[read]
    assert failures == {}


JOBS = [f"job[{w}]" for w in ("dead", "queued", "retry", "running", "scheduled")]
BY_STATUS = [f"jobs_by_status[{s}]" for s in ("dead", "queued", "retrying", "scheduled")]
QUEUES = ["queue_sizes", "queues"]
# the reads that read each key (found by the sweep): only they may fail on a key of another type
READERS = {
    "jobs": [*JOBS, "job[ok]", "job[member b]", *BY_STATUS, "jobs_by_status[in_progress]",
             "find_job_ids", *QUEUES, "queued_jobs", "workers"],
    "running": ["count_by_status", "job[queued]", *QUEUES],
    "limits": ["job[queued]", *QUEUES],
    "stats": ["count_by_status", "stats"],
    "dead": ["count_by_status", "dead_count", *JOBS, "jobs_by_status[dead]", "throughput"],
    "cancelled": ["count_by_status", *JOBS, "jobs_by_status[cancelled]"],
    "errors": [*JOBS, *BY_STATUS, "queued_jobs"],
    "checkins": [*JOBS, "jobs_by_status[in_progress]", "workers"],
    "paused": ["job[queued]", "paused", *QUEUES],
    "pools": ["job[running]", "jobs_by_status[in_progress]", *QUEUES, "worker_pools", "workers"],
    "history_data": ["find_job_ids", "history", "history[ok]", "job[ok]"]
    + [f"history_job[{w}]" for w in ("dead", "ok", "queued", "retry", "running", "scheduled")],
    "schedules": ["schedule", "schedules"],
    "runtime_limits": ["job[queued]", "limits"],
    "workflows": ["workflows"],
    "queue(...)": ["count_by_status", "job[scheduled]", "jobs_by_status[queued]", *QUEUES,
                   "queued_jobs[ok]"],
    "scheduled(...)": ["count_by_status", "job[scheduled]", "jobs_by_status[scheduled]", *QUEUES],
    "retry(...)": ["count_by_status", "job[retry]", "jobs_by_status[retrying]", *QUEUES],
    "history_of(...)": ["history", "history[ok]", "history_count", "throughput"],
    "in_progress(...)": ["job[running]", "jobs_by_status[in_progress]", "worker_pools", "workers"],
    "pool_info(...)": [],
}  # fmt: skip


@pytest.mark.parametrize("corruption", WRONG_TYPES, ids=[c.id for c in WRONG_TYPES])
async def test_a_key_of_another_type_fails_only_its_reads(
    raw: Redis, template: Template, corruption: Corruption
) -> None:
    failures = _failures(await _sweep(raw, template, corruption))
    assert set(failures) <= set(READERS[corruption.id])
    for name, error in failures.items():
        assert error.startswith("ResponseError") and "WRONGTYPE" in error, (name, error)


def _one(prefix: str) -> Corruption:
    return next(c for c in CORRUPTIONS if c.id.startswith(prefix))


async def test_what_the_reads_say_of_bad_values(raw: Redis, template: Template) -> None:
    """As docs/admin.md says: corrupt counters read as 0, bad objects as None or ``corrupt``."""
    t = template
    r = await _sweep(raw, t, _one("running[slow]=b'abc'"))
    assert {q.name: q.running for q in r["queues"]}["slow"] == 0
    assert r["count_by_status"][JobStatus.IN_PROGRESS] == 0
    r = await _sweep(raw, t, _one("limits[part]=b'1.5e3'"))
    assert {q.name: q.max_concurrency for q in r["queues"]}["part"] == 0
    r = await _sweep(raw, t, _one("stats[processed]=b'abc'"))
    assert "processed" not in r["stats"] and r["count_by_status"][JobStatus.FINISHED] == 0
    r = await _sweep(raw, t, _one("metrics=b'\\xc2\\xb2'"))
    assert r["activity"][-1].done == 0 and "processed" in r["stats"]
    r = await _sweep(raw, t, _one("jobs[dead]=b'{{not json'"))
    assert [j.corrupt for j in r["jobs_by_status[dead]"].items] == [True]
    assert r["job[dead]"].corrupt and r["job[dead]"].raw == b"{{not json"
    r = await _sweep(raw, t, _one("checkin[running]=b'[1, 2]'"))
    assert r["job[running]"].checkin is None and r["workers"][0].checkin is None
    r = await _sweep(raw, t, _one("errors[dead]=b'\"text\"'"))
    assert r["job[dead]"].error is None
    r = await _sweep(raw, t, _one("histdata[ok]=b'{{not json'"))
    assert t.ids["ok"] not in {h.id for h in r["history"].items}
    r = await _sweep(raw, t, _one("wf.created=b'abc'"))
    assert r["workflows"][0].created == 0 and r["workflow"].created == 0
    r = await _sweep(raw, t, _one("wf.finished=b'abc'"))
    assert r["workflows"][0].finished is None and r["workflow"].finished is None
    r = await _sweep(raw, t, _one("wf.nodes[b]=b'[1, 2]'"))
    assert (r["workflow"].nodes["b"].state, r["workflow"].nodes["b"].name) == ("corrupt", "?")
    r = await _sweep(raw, t, _one("names+bytes"))
    assert "\ufffd\ufffd" in r["job_names"]
    r = await _sweep(raw, t, _one("outbox.recent"))
    relay = r["outbox"].relays[0]
    assert (relay.pid, relay.backlog, relay.relayed, relay.error) == (0, None, 0, "5")
    r = await _sweep(raw, t, _one("periodic[nightly]=b'[1, 2]'"))
    assert r["schedules"] == []
