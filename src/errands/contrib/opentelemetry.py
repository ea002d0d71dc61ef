"""OpenTelemetry tracing for errands (``pip install 'errands[otel]'``).

>>> tracing = OpenTelemetryMiddleware()
>>> enqueuer = Enqueuer.from_url(url, namespace="myapp", middleware=[tracing])
>>> pool.middleware(tracing)

Enqueueing a job makes an ``enqueue NAME`` span (kind PRODUCER) under the current span (the web
request's) and stores its trace context in ``job.meta["otel"]``; running the job makes a
``process NAME`` span (kind CONSUMER) that is a child of it, one per attempt. Only
``opentelemetry-api`` is needed; configure the SDK and exporters as usual.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import SpanKind, Status, StatusCode

from .. import __version__
from ..errors import RetryLater
from ..job import Job
from ..longwork.iterable import Suspend
from ..middleware import Middleware, Next
from ._outcome import failure_outcome, is_failure_cancel

__all__ = ["OpenTelemetryMiddleware"]

SYSTEM = "errands"


class OpenTelemetryMiddleware(Middleware):
    """Spans for enqueueing and processing jobs, linked through ``job.meta[meta_key]``.

    ``tracer_provider`` defaults to the global one; ``propagator`` to the global propagator
    (W3C trace context and baggage unless configured otherwise)."""

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        *,
        propagator: TextMapPropagator | None = None,
        meta_key: str = "otel",
    ) -> None:
        self.tracer = trace.get_tracer("errands", __version__, tracer_provider=tracer_provider)
        self.propagator = propagator
        self.meta_key = meta_key

    def _attributes(self, job: Job, operation: str) -> dict[str, Any]:
        return {
            "messaging.system": SYSTEM,
            "messaging.operation.type": operation,
            "messaging.destination.name": job.name,
            "messaging.message.id": job.id,
        }

    async def enqueue(self, job: Job, next: Next) -> Any:
        with self.tracer.start_as_current_span(
            f"enqueue {job.name}", kind=SpanKind.PRODUCER, attributes=self._attributes(job, "send")
        ) as span:
            carrier: dict[str, str] = {}
            if self.propagator is not None:
                self.propagator.inject(carrier)
            else:
                propagate.inject(carrier)
            if carrier:
                job.meta[self.meta_key] = carrier
            if job.run_at is not None:
                span.set_attribute("errands.job.run_at", job.run_at)
            result = await next()
            if result is None:
                span.set_attribute("errands.job.dropped", True)
            return result

    async def process(self, job: Job, next: Next) -> Any:
        carrier = job.meta.get(self.meta_key)
        context = None
        if isinstance(carrier, Mapping):
            extract = self.propagator.extract if self.propagator is not None else propagate.extract
            context = extract(dict(carrier))
        attributes = self._attributes(job, "process")
        attributes["errands.job.attempt"] = job.attempt
        with self.tracer.start_as_current_span(
            f"process {job.name}",
            context=context,
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                return await next()
            except RetryLater as exc:
                span.set_attribute("errands.job.outcome", "snoozed")
                span.set_attribute("errands.job.snooze_seconds", exc.delay)
                raise
            except Suspend:  # an iterable job stopped at a checkpoint (longwork/iterable.py)
                span.set_attribute("errands.job.outcome", "suspended")
                raise
            except asyncio.CancelledError as exc:
                if not is_failure_cancel(job):
                    span.set_attribute("errands.job.outcome", "cancelled")
                    raise
                self._failed(span, job, exc)
                raise
            except Exception as exc:
                self._failed(span, job, exc)
                raise

    def _failed(self, span: trace.Span, job: Job, exc: BaseException) -> None:
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        span.set_attribute("errands.job.outcome", failure_outcome(job, exc))
