"""errands.contrib: Prometheus metrics and OpenTelemetry tracing middleware."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from errands import Enqueuer, FakeClock, Job, NonRetryableError, RetryLater, WorkerPool

prometheus_client = pytest.importorskip("prometheus_client")


async def run_mixed_jobs(
    redis_url: str, namespace: str, middleware: Any, clock: FakeClock | None = None
) -> dict[str, str]:
    """ok (succeeds), flaky (fails, retried), broken (dead), slow (times out, retried),
    snooze (RetryLater), bad args (dead). Returns their job ids by name."""
    pool = WorkerPool.from_url(redis_url, namespace=namespace, clock=clock)
    pool.middleware(middleware)

    @pool.job("ok")
    async def ok(n: int) -> int:
        return n

    @pool.job("flaky", max_fails=3)
    async def flaky() -> None:
        raise ConnectionError("down")

    @pool.job("broken")
    async def broken() -> None:
        raise NonRetryableError("gone")

    @pool.job("slow", timeout=0.05)
    async def slow() -> None:
        await asyncio.sleep(10)

    @pool.job("snooze")
    async def snooze(job: Job) -> None:
        raise RetryLater(3600)

    ids: dict[str, str] = {}
    async with Enqueuer.from_url(
        redis_url, namespace=namespace, middleware=[middleware], clock=clock
    ) as enqueuer:
        for name, args in [
            ("ok", {"n": 1}),
            ("ok", {"n": 2}),
            ("flaky", {}),
            ("broken", {}),
            ("slow", {}),
            ("snooze", {}),
            ("ok", {"n": "x"}),
        ]:
            job = await enqueuer.enqueue(name, args)
            assert job is not None
            ids.setdefault(name, job.id)
        if clock is not None:
            clock.advance(2.5)
        await pool.drain(timeout=10)
    return ids


async def test_prometheus_counters_and_histograms(redis_url: str, namespace: str) -> None:
    from errands.contrib.prometheus import PrometheusMiddleware

    registry = prometheus_client.CollectorRegistry()
    metrics = PrometheusMiddleware(registry)
    assert PrometheusMiddleware(registry).metrics is metrics.metrics  # shared per registry
    await run_mixed_jobs(redis_url, namespace, metrics, FakeClock())

    def value(metric: str, job_name: str) -> float | None:
        return registry.get_sample_value(metric, {"job_name": job_name})

    assert value("errands_jobs_enqueued_total", "ok") == 3
    assert value("errands_jobs_started_total", "ok") == 3
    assert value("errands_jobs_succeeded_total", "ok") == 2
    assert value("errands_jobs_failed_total", "ok") == 1  # the bad args
    assert value("errands_jobs_dead_total", "ok") == 1
    assert value("errands_jobs_failed_total", "flaky") == 1
    assert value("errands_jobs_retried_total", "flaky") == 1
    assert value("errands_jobs_dead_total", "flaky") in (None, 0)
    assert value("errands_jobs_dead_total", "broken") == 1
    assert value("errands_jobs_retried_total", "slow") == 1  # a timeout is a failure
    assert value("errands_jobs_failed_total", "snooze") in (None, 0)
    assert value("errands_jobs_succeeded_total", "snooze") in (None, 0)
    assert value("errands_job_run_seconds_count", "ok") == 3
    assert value("errands_job_queue_wait_seconds_count", "ok") == 3
    # every job waited 2.5 s by the fake clock
    assert value("errands_job_queue_wait_seconds_sum", "ok") == pytest.approx(7.5)


async def test_prometheus_queue_gauges(redis_url: str, namespace: str) -> None:
    from errands.contrib.prometheus import register_queue_collector

    registry = prometheus_client.CollectorRegistry()
    collector = register_queue_collector(redis_url, namespace, registry)
    assert register_queue_collector(redis_url, namespace, registry) is collector
    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        for _ in range(3):
            await enqueuer.enqueue("waiting")
        await enqueuer.enqueue("waiting", delay=60)
    samples = await asyncio.to_thread(prometheus_client.generate_latest, registry)
    text = samples.decode()
    assert 'errands_queue_jobs{job_name="waiting",state="queued"} 3.0' in text
    assert 'errands_queue_jobs{job_name="waiting",state="scheduled"} 1.0' in text
    assert 'errands_queue_latency_seconds{job_name="waiting"}' in text
    assert "errands_redis_up 1.0" in text
    assert "errands_dead_jobs 0.0" in text

    down = prometheus_client.CollectorRegistry()
    register_queue_collector("redis://127.0.0.1:1/0", namespace, down)
    text = (await asyncio.to_thread(prometheus_client.generate_latest, down)).decode()
    assert "errands_redis_up 0.0" in text


async def test_metrics_route_for_the_dashboard(redis_url: str, namespace: str) -> None:
    pytest.importorskip("starlette")
    from starlette.applications import Starlette

    from errands.contrib.prometheus import PrometheusMiddleware, metrics_route

    registry = prometheus_client.CollectorRegistry()
    PrometheusMiddleware(registry).metrics.enqueued.labels("x").inc()
    app = Starlette(routes=[metrics_route(registry)])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        response = await http.get("/metrics")
    assert response.status_code == 200
    assert 'errands_jobs_enqueued_total{job_name="x"} 1.0' in response.text


async def test_instrument_pool_adds_the_middleware_once(redis_url: str, namespace: str) -> None:
    from errands.contrib.prometheus import instrument_pool

    registry = prometheus_client.CollectorRegistry()
    pool = WorkerPool.from_url(redis_url, namespace=namespace)
    first = instrument_pool(pool, registry)
    assert instrument_pool(pool, registry) is first
    assert len(pool._middleware) == 1


# -- OpenTelemetry -------------------------------------------------------------------------------
@pytest.fixture
def spans() -> Any:
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


async def test_worker_span_is_a_child_of_the_enqueuing_request(
    redis_url: str, namespace: str, spans: Any
) -> None:
    from opentelemetry.trace import SpanKind, StatusCode

    from errands.contrib.opentelemetry import OpenTelemetryMiddleware

    provider, exporter = spans
    tracing = OpenTelemetryMiddleware(provider)
    tracer = provider.get_tracer("test")
    pool = WorkerPool.from_url(redis_url, namespace=namespace)
    pool.middleware(tracing)
    seen_trace: list[int] = []

    @pool.job("greet")
    async def greet(name: str) -> None:
        from opentelemetry import trace

        seen_trace.append(trace.get_current_span().get_span_context().trace_id)

    @pool.job("fail")
    async def fail() -> None:
        raise NonRetryableError("nope")

    async with Enqueuer.from_url(redis_url, namespace=namespace, middleware=[tracing]) as enq:
        with tracer.start_as_current_span("POST /signup") as request:
            job = await enq.enqueue("greet", {"name": "ada"})
            await enq.enqueue("fail")
        assert job is not None and "traceparent" in job.meta["otel"]
    await pool.drain(timeout=5)

    by_name = {s.name: s for s in exporter.get_finished_spans()}
    enqueue, process = by_name["enqueue greet"], by_name["process greet"]
    assert enqueue.parent.span_id == request.get_span_context().span_id
    assert enqueue.kind is SpanKind.PRODUCER and process.kind is SpanKind.CONSUMER
    assert process.parent is not None and process.parent.span_id == enqueue.context.span_id
    assert process.context.trace_id == request.get_span_context().trace_id == seen_trace[0]
    assert process.attributes["messaging.message.id"] == job.id
    assert process.attributes["errands.job.attempt"] == 1
    failed = by_name["process fail"]
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes["errands.job.outcome"] == "dead"
    assert any(e.name == "exception" for e in failed.events)
