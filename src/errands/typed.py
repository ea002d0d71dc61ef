"""What ``@pool.job(...)`` returns: the handler, still callable as before, plus a typed
``enqueue`` whose parameters are the handler's (after the Job), checked by mypy via ParamSpec.

>>> @pool.job("send_email")
... async def send_email(address: str, subject: str = "hi") -> None: ...
>>> pool.bind_enqueuer(enqueuer)                 # once, e.g. in the web app's lifespan
>>> job = await send_email.enqueue(address="a@example.com")
>>> job = await send_email.using(enqueuer, delay=60).enqueue("a@example.com", subject="x")
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar, overload
from weakref import WeakKeyDictionary

from redis.asyncio import Redis

from .backoff import RetryOptions
from .clock import Clock
from .convert import to_json
from .dedup import Dedup
from .enqueuer import UNIQUE_TTL, Enqueuer
from .errors import RegistrationError
from .handlers import resolve_hints, takes_job
from .job import Job
from .serialization import Serializer

__all__ = ["EnqueueCall", "JobDecorator", "JobFunction", "JobHost"]


class JobHost(Protocol):
    """What a job function needs of the pool that registered it (``WorkerPool`` is one)."""

    namespace: str
    clock: Clock
    serializer: Serializer
    bound_enqueuer: Enqueuer | None

    @property
    def redis(self) -> Redis: ...

    @property
    def started(self) -> bool: ...

    def register(self, name: str, handler: Callable[..., Any], **options: Any) -> None: ...


P = ParamSpec("P")  # the job's arguments: what enqueue() takes
C = ParamSpec("C")  # the handler's own parameters: what calling it takes
R = TypeVar("R")


class JobFunction(Generic[P, C, R]):
    """A registered handler. Calling it calls the handler; ``enqueue`` puts a job on the
    queue with the handler's parameters as its arguments (converted to JSON: datetimes,
    dataclasses, pydantic models... come back as such in the handler)."""

    def __init__(self, pool: JobHost, name: str, fn: Callable[C, R]) -> None:
        self.pool = pool
        self.name = name
        self._errands_handler = fn  # what JobType registers
        functools.update_wrapper(self, fn)
        params = list(inspect.signature(fn).parameters.values())
        if params and takes_job(params[0], resolve_hints(fn, params)):
            params = params[1:]
        self._signature = inspect.Signature(params)

    def __call__(self, *args: C.args, **kwargs: C.kwargs) -> R:
        return self._errands_handler(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<JobFunction {self.name} {self._errands_handler!r}>"

    def args(self, *args: P.args, **kwargs: P.kwargs) -> dict[str, Any]:
        """The job arguments (a JSON-able dict) for a call of the handler with these values;
        raises ``TypeError`` when they do not fit its parameters."""
        try:
            bound = self._signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self.name}: {exc}") from None
        out: dict[str, Any] = {}
        for name, value in bound.arguments.items():
            kind = self._signature.parameters[name].kind
            if kind is inspect.Parameter.VAR_KEYWORD:
                out.update(to_json(value))
            elif kind is not inspect.Parameter.VAR_POSITIONAL:
                out[name] = to_json(value)
        return out

    def item(self, *args: P.args, **kwargs: P.kwargs) -> tuple[str, dict[str, Any]]:
        """``(name, args)`` for ``enqueue_many``."""
        return self.name, self.args(*args, **kwargs)

    async def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> Job | None:
        """Enqueue a job through the pool's bound Enqueuer (``pool.bind_enqueuer``)."""
        return await self.using().enqueue(*args, **kwargs)

    def using(
        self,
        enqueuer: Enqueuer | None = None,
        *,
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        priority: int = 0,
        retry: RetryOptions | None = None,
        meta: Mapping[str, Any] | None = None,
        unique: bool = False,
        key: Any = None,
        ttl: float = UNIQUE_TTL,
        job_id: str | None = None,
        dedup: Dedup | None = None,
        timeout: float | timedelta | None = None,
        partition: str | None = None,
    ) -> EnqueueCall[P]:
        """Enqueue options (as for ``enqueue``; ``unique=True`` or a ``key`` use
        ``enqueue_unique``; ``job_id`` makes it idempotent) and optionally another Enqueuer:
        chain ``.enqueue()``. ``enqueuer`` must enqueue asynchronously, as an :class:`Enqueuer`
        (or a stand-in of one: a test harness, an AsyncMock); one whose ``enqueue`` is a plain
        method, as a SyncEnqueuer's, is refused here, before anything is stored."""
        if enqueuer is not None:
            send = getattr(enqueuer, "enqueue", None)
            plain = inspect.isfunction(send) or inspect.ismethod(send)
            if not callable(send) or (plain and not inspect.iscoroutinefunction(send)):
                raise TypeError(
                    f"using() takes an Enqueuer (async), got {type(enqueuer).__name__}; "
                    "with a SyncEnqueuer, call its enqueue(name, fn.args(...))"
                )
        options: dict[str, Any] = {"delay": delay, "at": at, "priority": priority}
        options.update(retry=retry, meta=meta, job_id=job_id, partition=partition)
        if unique or key is not None:
            if dedup is not None or timeout is not None:
                raise ValueError("unique/key (enqueue_unique) takes no dedup= or timeout=")
            options.update(key=key, ttl=ttl)
        else:
            options.update(dedup=dedup, timeout=timeout)
        return EnqueueCall(self, enqueuer, options, unique or key is not None)


class EnqueueCall(Generic[P]):
    """``job_function.using(...)``: call ``enqueue`` with the job's arguments."""

    def __init__(
        self,
        fn: JobFunction[P, Any, Any],
        enqueuer: Enqueuer | None,
        options: dict[str, Any],
        unique: bool,
    ) -> None:
        self._fn = fn
        self._enqueuer = enqueuer
        self._options = options
        self._unique = unique

    async def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> Job | None:
        """Enqueue the job; None when it was a duplicate (unique) or a middleware dropped it."""
        fn = self._fn
        job_args = fn.args(*args, **kwargs)
        enqueuer = self._enqueuer or default_enqueuer(fn.pool)
        if self._unique:
            return await enqueuer.enqueue_unique(fn.name, job_args, **self._options)
        return await enqueuer.enqueue(fn.name, job_args, **self._options)


_own_enqueuers: WeakKeyDictionary[JobHost, Enqueuer] = WeakKeyDictionary()


def default_enqueuer(pool: JobHost) -> Enqueuer:
    """The Enqueuer bound with ``pool.bind_enqueuer``; inside a running pool (a handler enqueueing
    a follow-up job) one on the pool's own connection."""
    bound = pool.bound_enqueuer
    if bound is not None:
        return bound
    if pool.started:
        own = _own_enqueuers.get(pool)
        if own is None or own.redis is not pool.redis:
            own = Enqueuer(
                pool.redis, namespace=pool.namespace, clock=pool.clock, serializer=pool.serializer
            )
            _own_enqueuers[pool] = own
        return own
    raise RuntimeError(
        "no Enqueuer for this pool's jobs: call pool.bind_enqueuer(enqueuer) first "
        "(e.g. in your web app's lifespan), or pass one: job.using(enqueuer).enqueue(...)"
    )


def bind_enqueuer(pool: JobHost, enqueuer: Enqueuer | None) -> None:
    if enqueuer is not None and enqueuer.keys.namespace != pool.namespace:
        raise RegistrationError(
            f"the Enqueuer's namespace {enqueuer.keys.namespace!r} is not the pool's "
            f"{pool.namespace!r}: its jobs would never run"
        )
    pool.bound_enqueuer = enqueuer


class JobDecorator:
    """``@pool.job(name, **options)``: registers the function and returns a JobFunction."""

    def __init__(self, pool: JobHost, name: str | None, options: dict[str, Any]) -> None:
        self._pool = pool
        self._name = name
        self._options = options

    @overload
    def __call__(
        self, fn: Callable[Concatenate[Job, P], R]
    ) -> JobFunction[P, Concatenate[Job, P], R]: ...

    @overload
    def __call__(self, fn: Callable[P, R]) -> JobFunction[P, P, R]: ...

    def __call__(self, fn: Callable[..., Any]) -> JobFunction[Any, Any, Any]:
        name = self._name or fn.__name__
        self._pool.register(name, fn, **self._options)
        return JobFunction(self._pool, name, fn)
