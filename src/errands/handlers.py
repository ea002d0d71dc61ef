"""Job types: a registered handler with its options, and binding job args to its parameters."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .backoff import Backoff, ExponentialBackoff, as_backoff
from .checks import flag, seconds, whole
from .convert import ArgumentMismatch, converter
from .errors import JobArgumentError, RegistrationError
from .job import Job
from .limits import Limit, compile_limits
from .limits.spec import MAX_CONCURRENCY
from .store.keys import check_job_name

__all__ = ["MAX_RESULT", "JobType", "current_job"]

_MAX_PRIORITY = 1000
_MAX_RESULT_TTL = 2**53 / 1000  # s: the longest TTL ack.lua takes (lib/types.lua's MAX_MS)
# bytes of a result's JSON, at most (over it the job fails for good: worker/results.py): Redis
# refuses a bulk string over its proto-max-bulk-len, 512 MiB by default, closing the connection
MAX_RESULT = 512 << 20


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
    strict_result: bool = False
    limits: tuple[Limit, ...] = ()
    max_result: int = MAX_RESULT
    is_async: bool = True
    binder: Callable[[Job], tuple[tuple[Any, ...], dict[str, Any]]] | None = None

    def __post_init__(self) -> None:
        self.handler = getattr(self.handler, "_errands_handler", self.handler)  # a JobFunction
        try:
            check_job_name(self.name)
        except ValueError as exc:
            raise RegistrationError(str(exc)) from None
        if not callable(self.handler):
            raise RegistrationError(f"handler of {self.name!r} is not callable")
        self._check_options()
        mc = self.max_concurrency  # the rule of Concurrency's limit, and 0 for no cap
        if not isinstance(mc, int) or isinstance(mc, bool) or not 0 <= mc <= MAX_CONCURRENCY:
            raise RegistrationError(
                f"{self.name}: max_concurrency must be an int in 0..{MAX_CONCURRENCY} "
                f"(0 = no cap), got {mc!r}"
            )
        self.code_max_concurrency = self.max_concurrency  # as registered (limitwatch.py)
        try:
            self.limits = tuple(self.limits)
            # a type-wide Concurrency is the max_concurrency counter; the rest is checked by
            # the fetch script from this spec (see limits/spec.py)
            self.max_concurrency, self.limit_spec = compile_limits(
                self.limits, self.max_concurrency
            )
        except (TypeError, ValueError) as exc:
            raise RegistrationError(f"{self.name}: {exc}") from None
        self.result_ttl_ms = int(self.result_ttl * 1000)
        self.backoff = (
            as_backoff(self.backoff) if self.backoff is not None else ExponentialBackoff()
        )
        self.is_async = inspect.iscoroutinefunction(self.handler) or inspect.iscoroutinefunction(
            getattr(self.handler, "__call__", None)  # noqa: B004 - async callable objects
        )
        self.binder = make_binder(self.name, self.handler)

    def _check_options(self) -> None:
        """Refuse a bad option where it is given (a nan max_fails or timeout passed every
        comparison and broke the job later; ``"no"`` was a true flag), naming it."""
        name, error = self.name, RegistrationError
        self.max_fails = whole(f"{name}: max_fails", self.max_fails, least=1, error=error)
        if self.timeout is not None:
            self.timeout = seconds(f"{name}: timeout", self.timeout, zero=False, error=error)
        self.priority = whole(f"{name}: priority", self.priority, least=1, most=10**5, error=error)
        # (above 2**53 ms, or nan or inf: every ack refused)
        self.result_ttl = seconds(
            f"{name}: result_ttl", self.result_ttl, most=_MAX_RESULT_TTL, error=error
        )
        self.strict_result = flag(f"{name}: strict_result", self.strict_result, error=error)
        self.max_result = whole(f"{name}: max_result", self.max_result, least=1, error=error)
        self.skip_dead = flag(f"{name}: skip_dead", self.skip_dead, error=error)


def check_priority(priority: int) -> int:
    """``priority`` if an int in -1000..1000 (a bool is refused: stored, it broke the job's
    listing, and a periodic schedule's every tick)."""
    return whole("priority", priority, least=-_MAX_PRIORITY, most=_MAX_PRIORITY)


Binder = Callable[[Job], tuple[tuple[Any, ...], dict[str, Any]]]


def takes_job(param: inspect.Parameter, hints: dict[str, Any]) -> bool:
    """The documented rule: a handler's first parameter receives the Job when it is named
    ``job`` or annotated ``Job`` (or a subclass); any other parameter is a job argument."""
    if param.kind not in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
        return False
    if param.name == "job":
        return True
    annotation = hints.get(param.name, param.annotation)
    if isinstance(annotation, type):
        return issubclass(annotation, Job)
    return isinstance(annotation, str) and annotation.rpartition(".")[2] == "Job"


def make_binder(name: str, handler: Callable[..., Any]) -> Binder | None:
    """None when the handler takes just the job; otherwise a function mapping job args to the
    handler's arguments, checked and converted to their annotations (see :mod:`.convert`)."""
    try:
        sig = inspect.signature(handler)
    except (TypeError, ValueError):
        return None
    params = list(sig.parameters.values())
    hints = resolve_hints(handler, params)
    with_job = bool(params) and takes_job(params[0], hints)
    if params and not with_job:
        _refuse_arq_context(name, params[0])
    rest = params[1:] if with_job else params
    if with_job and not rest:
        return None
    for p in rest:
        if p.kind is p.POSITIONAL_ONLY:
            raise RegistrationError(f"{name}: job argument {p.name!r} cannot be positional-only")
    var_kw = next((p for p in rest if p.kind is p.VAR_KEYWORD), None)
    fields = [p for p in rest if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    required = [p.name for p in fields if p.default is p.empty]
    converters = {p.name: converter(hints.get(p.name, Any)) for p in fields}
    extra = converter(hints.get(var_kw.name, Any)) if var_kw is not None else None

    def bind(job: Job) -> tuple[tuple[Any, ...], dict[str, Any]]:
        args = job.args
        for field in required:
            if field not in args:
                raise JobArgumentError(f"{name}: missing argument {field!r}")
        if extra is None:
            unknown = sorted(set(args) - converters.keys())
            if unknown:
                raise JobArgumentError(f"{name}: unexpected argument {unknown[0]!r}")
        kwargs: dict[str, Any] = {}
        try:
            for field, value in args.items():
                kwargs[field] = converters.get(field, extra or _any)(value, field)
        except ArgumentMismatch as exc:
            raise JobArgumentError(f"{name}: {exc}") from None
        return ((job,) if with_job else ()), kwargs

    return bind


def _refuse_arq_context(name: str, first: inspect.Parameter) -> None:
    """arq handlers take ``ctx`` first; here it would be a required job argument, failing every
    job at run time ("missing argument 'ctx'"). Say so at registration instead."""
    if first.name == "ctx" and first.kind in (first.POSITIONAL_ONLY, first.POSITIONAL_OR_KEYWORD):
        raise RegistrationError(
            f"{name}: the handler's first parameter is 'ctx', as in arq; errands passes the Job "
            "instead: write 'async def handler(job: Job, ...)' and use job.context where arq "
            "used ctx (on_startup hooks fill it), or rename the parameter if it is a job argument"
        )


def _any(value: Any, path: str) -> Any:
    return value


def resolve_hints(handler: Callable[..., Any], params: list[inspect.Parameter]) -> dict[str, Any]:
    """The resolved annotations of a handler's parameters (unresolvable ones left out)."""
    target = handler
    if not (inspect.isfunction(handler) or inspect.ismethod(handler)):
        target = getattr(handler, "__call__", handler)  # noqa: B004 - callable objects
    try:
        return typing.get_type_hints(target, include_extras=True)
    except Exception:
        return _hints_one_by_one(target, params)


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


_current_job: contextvars.ContextVar[Job] = contextvars.ContextVar("errands_current_job")


def current_job() -> Job:
    """The Job whose handler is running in this task (or thread): for handlers that do not take
    the Job as a parameter but need ``context``, ``checkin()`` or ``attempt``."""
    try:
        return _current_job.get()
    except LookupError:
        raise RuntimeError("current_job() works only inside a running handler") from None


async def call_handler(jt: JobType, job: Job, executor: Any) -> Any:
    """Run the handler: awaited when async, in ``executor`` (a thread) when a plain def."""
    _current_job.set(job)
    if jt.binder is None and jt.is_async:  # (the handler takes just the job: the common case;
        return await jt.handler(job)  # Worker._run does this branch itself, without middleware)
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
        if future.cancelled():
            raise
        # the thread's outcome wins: a job that finished (after its timeout, or after a cancel
        # or stop request) is done, not failed and run again
        error = future.exception()
        if error is not None:
            raise error from None
        return future.result()
