"""Registering job types, middleware and hooks on a WorkerPool (the part of its API used
before it starts)."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar, cast

from ..backoff import Backoff
from ..errors import RegistrationError
from ..handlers import MAX_RESULT, JobType
from ..limits import Limit, Rate
from ..longwork.batch import BatchHandler, BatchRunner
from ..longwork.iterable import MAX_CURSOR, Generator, IterableRunner
from ..middleware import ProcessMiddleware, as_process
from ..store.scripts import Scripts
from ..typed import JobDecorator, JobHost, bind_enqueuer
from .limiter import Limiter

if TYPE_CHECKING:
    from ..enqueuer import Enqueuer

__all__ = ["Hook", "JobRegistry", "call_hook", "seconds"]

Hook = Callable[[dict[str, Any]], Awaitable[None] | None]
G = TypeVar("G", bound=Generator)
B = TypeVar("B", bound=BatchHandler)


def seconds(value: float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


async def call_hook(hook: Hook, context: dict[str, Any]) -> None:
    result = hook(context)
    if inspect.isawaitable(result):
        await result


async def call_hooks(hooks: list[Hook], context: dict[str, Any], what: str) -> Exception | None:
    """Run every hook, even after one fails (logged); returns the first error."""
    first: Exception | None = None
    for hook in hooks:
        try:
            await call_hook(hook, context)
        except Exception as exc:
            logging.getLogger("errands.pool").exception("%s hook %r failed", what, hook)
            first = first or exc
    return first


class JobRegistry:
    """Mixin of WorkerPool: ``job``, ``register``, ``middleware``, ``on_startup``..."""

    job_types: dict[str, JobType]
    _middleware: list[ProcessMiddleware]
    _on_startup: list[Hook]
    _on_shutdown: list[Hook]
    _started: bool

    def _as_host(self) -> JobHost:
        return cast("JobHost", self)  # WorkerPool, the only class using this mixin

    def job(
        self,
        name: str | None = None,
        *,
        max_fails: int = 4,
        backoff: Backoff | Callable[[int], float] | None = None,
        timeout: float | timedelta | None = None,
        skip_dead: bool = False,
        max_concurrency: int = 0,
        priority: int = 1,
        result_ttl: float | timedelta = timedelta(days=1),
        strict_result: bool = False,
        limits: Sequence[Limit] = (),
        max_result: int = MAX_RESULT,
    ) -> JobDecorator:
        """Decorator registering a handler (async def, or plain def run in a thread); returns a
        ``JobFunction``: the handler, plus a typed ``.enqueue(...)``.

        ``priority`` weights how often this job type's queue is sampled (1..100000);
        ``max_concurrency`` caps running jobs of this name across every pool (0 = no cap; an
        int up to 10^9, as :class:`~errands.Concurrency`, else RegistrationError);
        ``result_ttl`` is how long the return value and finished record are kept;
        ``strict_result`` makes a return value JSON cannot hold an error (the job is dead)
        instead of a warning and a ``null`` result;
        ``limits`` (:class:`~errands.Rate`, :class:`~errands.Concurrency`) are checked when a
        job is fetched, across every pool, type-wide or per partition (see docs/limits.md);
        ``max_result``: bytes of the return value's JSON, at most (by default 512 MiB, the
        largest value Redis takes by default); a larger one fails the job for good, not stored.
        """
        options: dict[str, Any] = {"max_fails": max_fails, "backoff": backoff}
        options["timeout"] = timeout
        options["strict_result"] = strict_result
        options.update(skip_dead=skip_dead, max_concurrency=max_concurrency, priority=priority)
        options["limits"] = tuple(limits)
        options["max_result"] = max_result
        return JobDecorator(self._as_host(), name, {**options, "result_ttl": result_ttl})

    def iterable_job(
        self,
        name: str,
        *,
        checkpoint_every: float | timedelta = timedelta(seconds=5),
        max_cursor: int = MAX_CURSOR,
        **options: Any,
    ) -> Callable[[G], G]:
        """Decorator registering a resumable job: an async generator ``(job, cursor)`` that
        yields the cursor after each item it finished. It starts from the cursor of the last
        checkpoint (None the first time); checkpoints are written at most every
        ``checkpoint_every``, and when the pool stops (then the job goes back to the head of
        its queue, no attempt counted). ``max_cursor``: bytes of a cursor's JSON, at most (by
        default 1 MiB, as the Enqueuer's ``max_payload``): a larger one fails the job for good
        at its checkpoint, not written. ``options`` as for :meth:`job` (``max_fails``,
        ``backoff``, ``timeout``, ``max_concurrency``, ...). See docs/long-jobs.md."""

        def register(fn: G) -> G:
            runner = IterableRunner(name, fn, checkpoint_every, max_cursor)
            self.register(name, runner, **options)
            return fn

        return register

    def batch_job(
        self,
        name: str,
        *,
        max_size: int = 100,
        max_wait: float | timedelta = timedelta(seconds=1),
        **options: Any,
    ) -> Callable[[B], B]:
        """Decorator registering a batch handler: ``async def f(jobs: list[Job]) ->
        BatchOutcome``, run with up to ``max_size`` jobs of ``name`` at once, as soon as that
        many wait or the oldest has waited ``max_wait``. Each job keeps its own id, attempts,
        retries and dead entry: ``BatchOutcome(failed={job id: exception})`` names the ones that
        failed. ``options`` as for :meth:`job` (``max_fails``, ``backoff``, ``timeout`` for one
        batch, ``max_concurrency``...). See docs/long-jobs.md."""

        def register(fn: B) -> B:
            runner = BatchRunner(name, fn, max_size, max_wait)
            self.register(name, runner, **options)
            return fn

        return register

    def limiter(self, name: str, *rates: Rate, max_snoozes: int = 100) -> Limiter:
        """A limiter shared by every pool of the namespace, for use inside handlers (calls to
        an outside API): ``async with limiter.acquire(): ...``. Over its rates, the running job
        is snoozed until it frees, without counting a failure, at most ``max_snoozes`` times in
        the job's life (then it fails as on any error). See docs/limits.md."""
        pool = cast("Any", self)  # WorkerPool: its redis client and keys
        scripts: list[Scripts] = []

        def bound() -> Scripts:
            if not scripts:
                scripts.append(Scripts(pool.redis, pool.keys))
            return scripts[0]

        return Limiter(name, tuple(rates), bound, max_snoozes)

    def bind_enqueuer(self, enqueuer: Enqueuer | None) -> None:
        """Set the Enqueuer that ``.enqueue()`` of this pool's job functions uses (None unbinds);
        it must have the pool's namespace."""
        bind_enqueuer(self._as_host(), enqueuer)

    def register(self, name: str, handler: Callable[..., Any], **options: Any) -> None:
        """Register ``handler`` for job ``name`` (options as for :meth:`job`)."""
        if self._started:
            raise RegistrationError("register job types before the pool starts")
        if name in self.job_types:
            raise RegistrationError(f"job {name!r} is already registered")
        # (durations in seconds or timedeltas, and every other option: checked by JobType)
        self.job_types[name] = JobType(name, handler, **options)

    def middleware(self, mw: Any) -> Any:
        """Add middleware: ``async def mw(job, next)`` or an object with ``process``."""
        if self._started:
            raise RegistrationError("add middleware before the pool starts")
        self._middleware.append(as_process(mw))
        return mw

    def on_startup(self, fn: Hook) -> Hook:
        """Run ``fn(context)`` before fetching starts (open db pools here; share via context)."""
        self._on_startup.append(fn)
        return fn

    def on_shutdown(self, fn: Hook) -> Hook:
        """Run ``fn(context)`` after the last job finished."""
        self._on_shutdown.append(fn)
        return fn
