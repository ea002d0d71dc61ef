"""Job types: a registered handler with its options, and binding job args to its parameters."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .backoff import Backoff, ExponentialBackoff, as_backoff
from .errors import JobArgumentError, RegistrationError
from .job import Job
from .keys import check_job_name

__all__ = ["JobType"]

_MAX_PRIORITY = 1000


@dataclass
class JobType:
    """Everything a pool knows about one job name."""

    name: str
    handler: Callable[..., Any]
    max_fails: int = 4
    backoff: Backoff | None = None
    timeout: float | None = None
    skip_dead: bool = False
    max_concurrency: int = 0
    priority: int = 1
    result_ttl: float = 86400.0
    is_async: bool = True
    binder: Callable[[Job], tuple[tuple[Any, ...], dict[str, Any]]] | None = None

    def __post_init__(self) -> None:
        try:
            check_job_name(self.name)
        except ValueError as exc:
            raise RegistrationError(str(exc)) from None
        if not callable(self.handler):
            raise RegistrationError(f"handler of {self.name!r} is not callable")
        if self.max_fails < 1:
            raise RegistrationError(f"{self.name}: max_fails must be >= 1, got {self.max_fails}")
        if self.timeout is not None and self.timeout <= 0:
            raise RegistrationError(f"{self.name}: timeout must be > 0, got {self.timeout}")
        if self.max_concurrency < 0:
            raise RegistrationError(f"{self.name}: max_concurrency must be >= 0")
        if not 1 <= self.priority <= 100_000:
            raise RegistrationError(f"{self.name}: priority must be 1..100000, got {self.priority}")
        if self.result_ttl < 0:
            raise RegistrationError(f"{self.name}: result_ttl must be >= 0")
        self.result_ttl_ms = int(self.result_ttl * 1000)
        self.backoff = (
            as_backoff(self.backoff) if self.backoff is not None else ExponentialBackoff()
        )
        self.is_async = inspect.iscoroutinefunction(self.handler) or inspect.iscoroutinefunction(
            getattr(self.handler, "__call__", None)  # noqa: B004 - async callable objects
        )
        self.binder = make_binder(self.name, self.handler)


def check_priority(priority: int) -> int:
    if not isinstance(priority, int) or not -_MAX_PRIORITY <= priority <= _MAX_PRIORITY:
        raise ValueError(f"priority must be an int in -1000..1000, got {priority!r}")
    return priority


def make_binder(
    name: str, handler: Callable[..., Any]
) -> Callable[[Job], tuple[tuple[Any, ...], dict[str, Any]]] | None:
    """None when the handler takes just the job; otherwise a function mapping job args to
    keyword arguments, checking names and (simple) annotated types."""
    try:
        sig = inspect.signature(handler)
    except (TypeError, ValueError):
        return None
    params = list(sig.parameters.values())
    if not params:
        raise RegistrationError(f"handler of {name!r} must accept the job as first parameter")
    rest = params[1:]
    if not rest:
        return None
    try:
        hints = typing.get_type_hints(handler)
    except Exception:
        hints = _hints_one_by_one(handler, rest)
    var_kw = any(p.kind is p.VAR_KEYWORD for p in rest)
    fields = [p for p in rest if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    required = [p.name for p in fields if p.default is p.empty]
    types_ = {p.name: hints.get(p.name, Any) for p in fields}

    def bind(job: Job) -> tuple[tuple[Any, ...], dict[str, Any]]:
        args = job.args
        for field in required:
            if field not in args:
                raise JobArgumentError(f"{name}: missing argument {field!r}")
        if not var_kw:
            unknown = sorted(set(args) - set(types_))
            if unknown:
                raise JobArgumentError(f"{name}: unexpected argument {unknown[0]!r}")
        for field, value in args.items():
            expected = types_.get(field, Any)
            if not _matches(value, expected):
                raise JobArgumentError(
                    f"{name}: argument {field!r} must be {_type_name(expected)}, "
                    f"got {type(value).__name__} {value!r:.60}"
                )
        return (job,), dict(args)

    return bind


def _hints_one_by_one(
    handler: Callable[..., Any], params: list[inspect.Parameter]
) -> dict[str, Any]:
    """``get_type_hints`` fails as a whole on one unresolvable annotation (a name imported under
    TYPE_CHECKING, say): resolve the others one by one; unresolvable ones are not checked."""
    namespace = getattr(inspect.unwrap(handler), "__globals__", {})
    hints: dict[str, Any] = {}
    for p in params:
        annotation = p.annotation
        if isinstance(annotation, str):
            try:
                annotation = eval(annotation, namespace)
            except Exception:
                continue
        if annotation is not p.empty:
            hints[p.name] = annotation
    return hints


def _matches(value: Any, expected: Any) -> bool:
    if expected is Any or expected is object:
        return True
    origin = typing.get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(expected))
    if expected is None or expected is type(None):
        return value is None
    if origin is typing.Literal:
        return value in typing.get_args(expected)
    check = origin if origin is not None else expected
    if not isinstance(check, type):
        return True  # TypedDict, NewType, TypeVar...: not checked
    if check is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if check is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, check)


def _type_name(expected: Any) -> str:
    return getattr(expected, "__name__", None) or str(expected).replace("typing.", "")


async def call_handler(jt: JobType, job: Job, executor: Any) -> Any:
    """Run the handler: awaited when async, in ``executor`` (a thread) when a plain def."""
    args, kwargs = jt.binder(job) if jt.binder else ((job,), {})
    if jt.is_async:
        return await jt.handler(*args, **kwargs)
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()
    future = loop.run_in_executor(executor, lambda: context.run(jt.handler, *args, **kwargs))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        # A thread cannot be interrupted: keep the job (and its slot) until it really ends, so
        # a timed-out or cancelled sync job never runs twice at once. If the pool stops first,
        # the job stays in its in-progress set and a reaper recovers it once the process is gone.
        while not future.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([future])
        raise
