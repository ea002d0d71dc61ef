"""Prometheus metrics for errands (``pip install 'errands[prometheus]'``).

>>> metrics = PrometheusMiddleware()
>>> pool.middleware(metrics)                                  # started/succeeded/failed/...
>>> enqueuer = Enqueuer.from_url(url, middleware=[metrics])   # enqueued
>>> register_queue_collector(url, namespace="myapp")          # queue sizes, latency, pools
>>> start_http_server(9100)   # or: python -m errands worker jobs:pool --metrics-port 9100

Counters and histograms are labelled ``job_name``; the gauges are read from Redis through a
``Client`` when Prometheus scrapes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest, start_http_server

from ..admin.client import Client
from ..errors import RetryLater
from ..job import Job
from ..longwork.iterable import Suspend
from ..middleware import Middleware, Next
from ._outcome import failure_outcome, is_failure_cancel, worker_now

if TYPE_CHECKING:
    from starlette.routing import Route

    from ..worker.pool import WorkerPool

__all__ = [
    "PrometheusMiddleware",
    "QueueCollector",
    "instrument_pool",
    "metrics_route",
    "register_queue_collector",
    "start_http_server",
]

log = logging.getLogger("errands.prometheus")

RUN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 86400)


@dataclass
class _Metrics:
    enqueued: Counter
    started: Counter
    succeeded: Counter
    failed: Counter
    retried: Counter
    dead: Counter
    run_time: Histogram
    queue_wait: Histogram


_by_registry: WeakKeyDictionary[CollectorRegistry, _Metrics] = WeakKeyDictionary()


def _metrics(registry: CollectorRegistry) -> _Metrics:
    """One set of metric objects per registry (a second middleware shares them)."""
    found = _by_registry.get(registry)
    if found is not None:
        return found

    def counter(name: str, doc: str) -> Counter:
        return Counter(f"errands_jobs_{name}", doc, ["job_name"], registry=registry)

    made = _Metrics(
        enqueued=counter("enqueued", "Jobs enqueued"),
        started=counter("started", "Job attempts started"),
        succeeded=counter("succeeded", "Job attempts that succeeded"),
        failed=counter("failed", "Job attempts that failed (retried, dead or dropped)"),
        retried=counter("retried", "Failed job attempts that will be retried"),
        dead=counter("dead", "Failed job attempts that sent the job to the dead set"),
        run_time=Histogram(
            "errands_job_run_seconds",
            "Run time of job attempts (middleware after this one included)",
            ["job_name"],
            registry=registry,
            buckets=RUN_BUCKETS,
        ),
        queue_wait=Histogram(
            "errands_job_queue_wait_seconds",
            "Time from enqueue (or the scheduled time) to the start of the first attempt",
            ["job_name"],
            registry=registry,
            buckets=WAIT_BUCKETS,
        ),
    )
    _by_registry[registry] = made
    return made


class PrometheusMiddleware(Middleware):
    """Counts jobs and times them. Add it to the pool (``pool.middleware(m)``) and to the
    Enqueuer (``middleware=[m]``) of the processes you scrape; ``registry`` defaults to
    prometheus_client's global one."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else REGISTRY
        self.metrics = _metrics(self.registry)

    async def enqueue(self, job: Job, next: Next) -> Any:
        result = await next()
        if result is not None:
            self.metrics.enqueued.labels(job.name).inc()
        return result

    async def process(self, job: Job, next: Next) -> Any:
        m, name = self.metrics, job.name
        m.started.labels(name).inc()
        if job.fails == 0:  # a retry's wait (its backoff) is not queue wait
            ready = job.run_at or job.enqueued_at
            m.queue_wait.labels(name).observe(max(0.0, worker_now(job, time.time()) - ready))
        began = time.perf_counter()
        try:
            result = await next()
        except (RetryLater, Suspend):
            raise  # snoozed, or an iterable job stopped at a checkpoint: no success, no failure
        except asyncio.CancelledError as exc:
            if is_failure_cancel(job):  # its timeout
                self._failed(job, exc)
            raise
        except Exception as exc:
            self._failed(job, exc)
            raise
        else:
            m.succeeded.labels(name).inc()
            return result
        finally:
            m.run_time.labels(name).observe(time.perf_counter() - began)

    def _failed(self, job: Job, exc: BaseException) -> None:
        m = self.metrics
        m.failed.labels(job.name).inc()
        outcome = failure_outcome(job, exc)
        if outcome == "retried":
            m.retried.labels(job.name).inc()
        elif outcome == "dead":
            m.dead.labels(job.name).inc()


class QueueCollector:
    """Gauges read from Redis on each scrape: ``errands_queue_jobs{job_name,state}`` (queued,
    scheduled, retry, running), ``errands_queue_latency_seconds{job_name}`` (wait of the job at
    the head of the queue), ``errands_dead_jobs``, ``errands_pools`` (live pools) and
    ``errands_redis_up``. It opens a connection per scrape, in a thread of its own."""

    def __init__(self, url: str, namespace: str = "errands", timeout: float = 5.0) -> None:
        self.url = url
        self.namespace = namespace
        self.timeout = timeout

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        families = self._families()
        up, queues, latency, dead, pools = families
        # its own thread and loop: scrapes come from prometheus_client's server thread, or from
        # a coroutine (metrics_route) whose loop must not be blocked
        executor = concurrent.futures.ThreadPoolExecutor(1, "errands-metrics")
        try:
            data = executor.submit(asyncio.run, self._read()).result(self.timeout)
        except Exception as exc:
            log.warning("cannot read queue metrics from Redis: %s", exc)
            up.add_metric([], 0)
            return [up]
        finally:
            executor.shutdown(wait=False)
        up.add_metric([], 1)
        for q in data["queues"]:
            for state, value in (
                ("queued", q.queued),
                ("scheduled", q.scheduled),
                ("retry", q.retrying),
                ("running", q.running),
            ):
                queues.add_metric([q.name, state], value)
            latency.add_metric([q.name], q.latency)
        dead.add_metric([], data["dead"])
        pools.add_metric([], data["pools"])
        return families

    def _families(self) -> list[GaugeMetricFamily]:
        return [
            GaugeMetricFamily("errands_redis_up", "1 when the last scrape reached Redis"),
            GaugeMetricFamily(
                "errands_queue_jobs", "Jobs per job name and state", labels=["job_name", "state"]
            ),
            GaugeMetricFamily(
                "errands_queue_latency_seconds",
                "How long the job at the head of the queue has waited",
                labels=["job_name"],
            ),
            GaugeMetricFamily("errands_dead_jobs", "Jobs in the dead set"),
            GaugeMetricFamily("errands_pools", "Worker pools that heartbeat"),
        ]

    async def _read(self) -> dict[str, Any]:
        async with Client.from_url(self.url, namespace=self.namespace) as client:
            return {
                "queues": await client.queues(),
                "dead": await client.dead_count(),
                "pools": len(await client.worker_pools()),
            }


_collectors: WeakKeyDictionary[CollectorRegistry, dict[tuple[str, str], QueueCollector]] = (
    WeakKeyDictionary()
)


def register_queue_collector(
    url: str, namespace: str = "errands", registry: CollectorRegistry | None = None
) -> QueueCollector:
    """Register a ``QueueCollector`` (once per registry, URL and namespace)."""
    registry = registry if registry is not None else REGISTRY
    known = _collectors.setdefault(registry, {})
    collector = known.get((url, namespace))
    if collector is None:
        collector = known[(url, namespace)] = QueueCollector(url, namespace)
        registry.register(collector)
    return collector


def instrument_pool(
    pool: WorkerPool, registry: CollectorRegistry | None = None, *, queues: bool = True
) -> PrometheusMiddleware:
    """Add a ``PrometheusMiddleware`` to ``pool`` unless it has one, and (``queues``)
    register the queue gauges for its Redis URL and namespace. What ``--metrics-port`` does."""
    registry = registry if registry is not None else REGISTRY
    middleware = _find(pool._middleware, registry)
    if middleware is None:
        middleware = PrometheusMiddleware(registry)
        pool.middleware(middleware)
    if queues:
        if pool.url:
            register_queue_collector(pool.url, pool.namespace, registry)
        else:
            log.warning("pool %s has no Redis URL: no queue gauges", pool.id)
    return middleware


def _find(chain: Sequence[Any], registry: CollectorRegistry) -> PrometheusMiddleware | None:
    for mw in chain:
        owner = getattr(mw, "__self__", None)
        if isinstance(owner, PrometheusMiddleware) and owner.registry is registry:
            return owner
    return None


def metrics_route(registry: CollectorRegistry | None = None, path: str = "/metrics") -> Route:
    """A Starlette route serving the metrics, e.g. for the dashboard:
    ``errands.dashboard(url, routes=[metrics_route()])``."""
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    target = registry if registry is not None else REGISTRY

    async def metrics(request: Request) -> Response:
        body = await asyncio.to_thread(generate_latest, target)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return Route(path, metrics, methods=["GET"], name="metrics")
