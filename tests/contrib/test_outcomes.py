"""docs/observability.md: what the metrics and the spans make of the attempts that neither
succeed nor fail plainly (a job with skip_dead, one cancelled on request, one requeued at a
stop, a snoozed one, an iterable job stopped at a checkpoint), of an enqueue a middleware
dropped, the span attributes, the span a plain def handler sees in its thread, and the queue
gauges when Redis does not answer."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from errands import Client, Enqueuer, Job, NonRetryableError, RetryLater, WorkerPool
from errands.middleware import Middleware, Next

from .test_contrib import prometheus_client
from .test_contrib import spans as spans  # (the fixture)

STOPPED = ("cancel_me", "stuck", "walk")  # started, then neither succeeded nor failed


class DropUnwanted(Middleware):
    async def enqueue(self, job: Job, next: Next) -> Any:
        return None if job.name == "unwanted" else await next()


def make_pool(redis_url: str, namespace: str, middleware: list[Any]) -> dict[str, Any]:
    """The pool and what its handlers saw: ``started`` (name -> Event) and ``thread`` (the
    trace and span ids current in the plain def handler's thread)."""
    from opentelemetry import trace

    pool = WorkerPool.from_url(redis_url, namespace=namespace, concurrency=8, shutdown_grace=0.5)
    for m in middleware:
        pool.middleware(m)
    started = {name: asyncio.Event() for name in STOPPED}
    thread: dict[str, Any] = {}

    @pool.job("dropped", skip_dead=True)
    async def dropped() -> None:
        raise NonRetryableError("not wanted")

    @pool.job("flaky", max_fails=3)
    async def flaky() -> None:
        raise ConnectionError("down")

    @pool.job("snooze")
    async def snooze() -> None:
        raise RetryLater(3600)

    @pool.job("cancel_me")
    async def cancel_me() -> None:
        started["cancel_me"].set()
        await asyncio.Event().wait()

    @pool.job("stuck")
    async def stuck() -> None:
        started["stuck"].set()
        await asyncio.Event().wait()

    @pool.iterable_job("walk", checkpoint_every=60)
    async def walk(job: Job, cursor: int | None) -> AsyncIterator[int]:
        i = cursor or 0
        while True:
            started["walk"].set()
            await asyncio.sleep(0.02)
            i += 1
            yield i

    @pool.job("sync")
    def sync() -> None:
        context = trace.get_current_span().get_span_context()
        thread.update(
            trace_id=context.trace_id, span_id=context.span_id, name=threading.current_thread().name
        )

    return {"pool": pool, "started": started, "thread": thread}


async def test_outcomes_in_metrics_and_spans(redis_url: str, namespace: str, spans: Any) -> None:
    from opentelemetry.trace import StatusCode

    from errands.contrib.opentelemetry import OpenTelemetryMiddleware
    from errands.contrib.prometheus import PrometheusMiddleware

    provider, exporter = spans
    registry = prometheus_client.CollectorRegistry()
    metrics, tracing = PrometheusMiddleware(registry), OpenTelemetryMiddleware(provider)
    made = make_pool(redis_url, namespace, [metrics, tracing])
    pool, started = made["pool"], made["started"]
    names = ("dropped", "flaky", "snooze", "sync", *STOPPED)

    def finished() -> dict[str, Any]:
        return {s.name: s for s in exporter.get_finished_spans()}

    async def until_finished(*wanted: str) -> None:
        async with asyncio.timeout(10):
            while not all(f"process {n}" in finished() for n in wanted):
                await asyncio.sleep(0.01)

    ids: dict[str, str] = {}
    enqueuer = Enqueuer.from_url(
        redis_url, namespace=namespace, middleware=[metrics, tracing, DropUnwanted()]
    )
    async with pool, enqueuer, Client.from_url(redis_url, namespace=namespace) as client:
        for name in (*names, "unwanted"):
            job = await enqueuer.enqueue(name)
            if job is not None:
                ids[name] = job.id
        assert "unwanted" not in ids
        async with asyncio.timeout(10):
            for event in started.values():
                await event.wait()
        await until_finished("dropped", "flaky", "snooze", "sync")
        assert await client.cancel(ids["cancel_me"]) == "running"
        await until_finished("cancel_me")
    await until_finished(*names)  # the stop: stuck requeued, walk stopped at a checkpoint

    def value(metric: str, name: str) -> float:
        return registry.get_sample_value(f"errands_jobs_{metric}_total", {"job_name": name}) or 0

    assert value("enqueued", "unwanted") == 0 and value("enqueued", "sync") == 1
    assert [value(m, "dropped") for m in ("failed", "retried", "dead")] == [1, 0, 0]
    for name in STOPPED:
        assert [value(m, name) for m in ("started", "succeeded", "failed")] == [1, 0, 0], name
    outcomes = {n: finished()[f"process {n}"].attributes.get("errands.job.outcome") for n in names}
    assert outcomes == {
        "dropped": "dropped",
        "flaky": "retried",
        "snooze": "snoozed",
        "sync": None,
        "cancel_me": "cancelled",
        "stuck": "cancelled",  # requeued at the stop: its handler was cancelled
        "walk": "suspended",
    }
    assert finished()["process dropped"].status.status_code is StatusCode.ERROR
    assert finished()["process walk"].status.status_code is not StatusCode.ERROR

    sync, thread = finished()["process sync"], made["thread"]
    assert thread["name"] != threading.main_thread().name
    assert (thread["trace_id"], thread["span_id"]) == (sync.context.trace_id, sync.context.span_id)
    assert dict(sync.attributes) == {
        "messaging.system": "errands",
        "messaging.operation.type": "process",
        "messaging.destination.name": "sync",
        "messaging.message.id": ids["sync"],
        "errands.job.attempt": 1,
    }
    sent = finished()["enqueue sync"].attributes
    assert sent["messaging.operation.type"] == "send"
    assert sent["messaging.destination.name"] == "sync"


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that takes connections and never answers (closed, they are reset)."""
    server = socket.create_server(("127.0.0.1", 0))
    try:
        yield server.getsockname()[1]
    finally:
        server.close()


async def test_queue_gauges_of_a_redis_that_does_not_answer(
    silent_port: int, namespace: str
) -> None:
    """A scrape gives up after the collector's limit (5 s unless given): errands_redis_up 0 and
    no other gauge."""
    from errands.contrib.prometheus import QueueCollector, register_queue_collector

    url = f"redis://127.0.0.1:{silent_port}/0"
    assert (
        register_queue_collector(url, namespace, prometheus_client.CollectorRegistry()).timeout
        == 5.0
    )
    registry = prometheus_client.CollectorRegistry()
    registry.register(QueueCollector(url, namespace, timeout=0.3))
    began = time.monotonic()
    text = (await asyncio.to_thread(prometheus_client.generate_latest, registry)).decode()
    assert time.monotonic() - began < 2
    assert "errands_redis_up 0.0" in text
    for gauge in (
        "errands_queue_jobs",
        "errands_queue_latency_seconds",
        "errands_dead_jobs",
        "errands_pools",
    ):
        assert gauge not in text
