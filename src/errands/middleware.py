"""Async middleware: ``async def mw(job, next)`` around handlers, and enqueue hooks.

A middleware *function* wraps processing. A middleware *object* may define ``process`` and/or
``enqueue`` (subclass :class:`Middleware`); give the same object to the Enqueuer and the
WorkerPool and it sees a job on both sides (set ``job.meta["trace"]`` at enqueue, read it in
``process``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from .errors import RegistrationError
from .job import Job

__all__ = ["Middleware", "Next", "ProcessMiddleware"]

Next = Callable[[], Awaitable[Any]]
ProcessMiddleware = Callable[[Job, Next], Awaitable[Any]]
Handler = Callable[[Job], Awaitable[Any]]


class Middleware:
    """Base class for middleware that hooks enqueue, processing, or both.

    ``enqueue`` runs before a job is stored: call ``await next()`` to store it (it returns the
    job) or return None without calling it to drop the job. ``process`` runs around the handler
    and returns what the handler returned.
    """

    async def enqueue(self, job: Job, next: Next) -> Any:
        return await next()

    async def process(self, job: Job, next: Next) -> Any:
        return await next()


def as_process(mw: Any) -> ProcessMiddleware:
    """Accept ``async def mw(job, next)`` or an object with a ``process`` method."""
    method = getattr(mw, "process", None)
    if method is not None and callable(method):
        return method  # type: ignore[no-any-return]
    if callable(mw):
        return mw  # type: ignore[no-any-return]
    raise RegistrationError(
        f"middleware must be an async function (job, next) or have a process method: {mw!r}"
    )


def as_enqueue(mw: Any) -> ProcessMiddleware:
    method = getattr(mw, "enqueue", None)
    if method is None or not callable(method):
        raise RegistrationError(
            f"enqueue middleware must have an enqueue(job, next) method: {mw!r}"
        )
    return method  # type: ignore[no-any-return]


def chain(middleware: Sequence[ProcessMiddleware], handler: Handler) -> Handler:
    """Compose middleware around ``handler``; the first registered runs outermost."""
    if not middleware:
        return handler
    stack = tuple(middleware)
    depth = len(stack)

    def run(job: Job) -> Awaitable[Any]:
        def step(i: int) -> Awaitable[Any]:
            if i == depth:
                return handler(job)
            return stack[i](job, lambda: step(i + 1))

        return step(0)

    return run
