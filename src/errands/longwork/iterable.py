"""Iterable (resumable) jobs: the handler is an async generator ``(job, cursor)`` that yields a
cursor after each item it finished; a resume starts after the last cursor checkpointed.

>>> @pool.iterable_job("backfill", checkpoint_every=timedelta(seconds=2))
... async def backfill(job: Job, cursor: int | None) -> AsyncIterator[int]:
...     async for user in users_after(cursor or 0):
...         await reindex(user)
...         yield user.id

``IterableRunner`` is the plain async handler registered for such a job. It reads the job's last
checkpoint (one it cannot read fails the job for good, nothing run: never taken for none, which
would start over), runs the generator from its cursor and writes a checkpoint
(``lua/checkpoint.lua``, fenced by the attempt) at most every ``checkpoint_every`` seconds (one
Redis cannot take, away or refusing writes for its state, OOM, READONLY...: logged, tried again
``checkpoint_every`` later; one refused by naming a key of another type fails the run; one whose
cursor is over ``max_cursor`` bytes of JSON fails the job for good, not written). After
each item it looks at its pool: a stopping pool gets a checkpoint at once (not written, Redis
away or refusing it: logged, the same) and ``Suspend``, which the worker settles by putting the
job back at the head of its queue without counting an attempt. A checkpoint refused
by the fence (this attempt lost the job) ends the run with ``Suspend(requeue=False)``: nothing is
settled. A cancel request found by a checkpoint cancels the job through the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol, cast

import orjson
from redis.exceptions import ResponseError

from ..checks import seconds, whole
from ..clock import Clock
from ..convert import ArgumentMismatch, converter, to_json
from ..errors import JobArgumentError, NonRetryableError, RegistrationError
from ..handlers import resolve_hints
from ..job import Job
from ..logfmt import describe, job_extra
from ..serialization import SerializationError, dumps_json
from ..store.coalescer import server_refusal
from ..store.connection import REDIS_ERRORS
from ..store.keyrepair import repair_hint
from ..store.scripts import Scripts
from .store import LongworkScripts, longwork_scripts

__all__ = ["MAX_CURSOR", "Checkpoint", "IterableHost", "IterableRunner", "Suspend"]

# bytes of a cursor's JSON, at most, by default: as the Enqueuer's max_payload (a job is at most
# 1 MiB by default: its cursor, written and published at every checkpoint, no larger)
MAX_CURSOR = 1 << 20

log = logging.getLogger("errands.worker")

# a stop's checkpoint not written: Redis away, or refusing it (an error reply)
_NOT_WRITTEN: tuple[type[BaseException], ...] = (*REDIS_ERRORS, ResponseError)


class Suspend(BaseException):  # a control-flow signal to the worker, not an error
    """An iterable job stopped between two items. With ``requeue`` (its pool is stopping) it was
    checkpointed and goes back to the head of its queue, no attempt counted; without, its
    attempt lost the job (a checkpoint was refused) and nothing is settled. A BaseException, as
    asyncio's CancelledError: a middleware's ``except Exception`` (log and carry on) lets it
    through, where one that caught it and returned had the job acknowledged as done half-way."""

    def __init__(self, requeue: bool, reason: str) -> None:
        super().__init__(reason)
        self.requeue = requeue


class IterableHost(Protocol):
    """What the runner needs of the worker running the job (``job._backend``)."""

    pool_id: str
    clock: Clock
    scripts: Scripts
    abandoned: bool

    @property
    def stopping(self) -> bool: ...

    def cancel_job(self, job_id: str, destroy: bool = False) -> bool: ...


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """What is stored for an iterable job: the last cursor committed, how many items were done
    and the handler's run time (seconds, every attempt summed) up to it, when it was written."""

    cursor: Any
    done: int = 0
    runtime: float = 0.0
    at: float = 0.0

    def to_json(self) -> bytes:
        data = {"cursor": self.cursor, "done": self.done, "runtime": self.runtime, "at": self.at}
        try:  # (dumps_json: a NaN or Infinity, which orjson writes as null, read back as None)
            return dumps_json(data, "the checkpoint")
        except SerializationError as exc:
            raise TypeError(
                f"the cursor {self.cursor!r:.80} cannot be stored as JSON: {exc}"
            ) from exc

    @classmethod
    def from_json(cls, raw: bytes | None) -> Checkpoint | None:
        """The checkpoint ``raw`` holds, None for none; ValueError saying what is wrong with
        one that cannot be read (never "none": a resume would start over from the first item)."""
        if raw is None:
            return None
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise ValueError(f"a JSON {type(data).__name__}, not an object")
        missing = [name for name in ("cursor", "done", "runtime", "at") if name not in data]
        if missing:
            raise ValueError(f"no {', '.join(missing)}")
        # (what errands writes: done a whole number within Redis's integers; one past them
        # ran the next item, then failed its checkpoint with a TypeError blaming the cursor)
        done = whole("done", data["done"], least=0, most=MAX_DONE)
        return cls(data["cursor"], done, _seconds("runtime", data), _seconds("at", data))


MAX_DONE = 2**63 - 1  # the most items a checkpoint counts (Redis's, and orjson's, int64)


def _seconds(name: str, data: dict[str, Any]) -> float:
    """``data[name]`` as a float if it is a finite number >= 0 (not a bool, not a string)."""
    value = data[name]
    if isinstance(value, int | float) and not isinstance(value, bool):
        with contextlib.suppress(OverflowError):  # (an int past what a float holds)
            if math.isfinite(number := float(value)) and number >= 0:
                return number
    raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r:.40}")


Generator = Callable[[Job, Any], AsyncIterator[Any]]


class IterableRunner:
    """The handler registered for an iterable job (see the module docstring). Returns
    ``{"done": items done in every attempt, "cursor": the last cursor}`` as the job's result."""

    def __init__(
        self,
        name: str,
        fn: Generator,
        checkpoint_every: float | timedelta,
        max_cursor: int = MAX_CURSOR,
    ) -> None:
        if not inspect.isasyncgenfunction(fn):
            raise RegistrationError(
                f"{name}: an iterable job's handler is an async generator "
                "('async def f(job, cursor): ... yield cursor')"
            )
        params = list(inspect.signature(fn).parameters.values())
        if len(params) != 2:
            raise RegistrationError(f"{name}: an iterable job's handler takes (job, cursor)")
        checkpoint_every = seconds(
            f"{name}: checkpoint_every", checkpoint_every, error=RegistrationError
        )
        max_cursor = whole(f"{name}: max_cursor", max_cursor, least=1, error=RegistrationError)
        hint = resolve_hints(fn, params).get(params[1].name, Any)
        self._convert = converter(hint)
        self.name = name
        self.fn = fn
        self.every = checkpoint_every
        self.max_cursor = max_cursor
        self.__name__ = getattr(fn, "__name__", name)
        self.__qualname__ = getattr(fn, "__qualname__", self.__name__)
        self.__module__ = getattr(fn, "__module__", __name__)
        self.__doc__ = fn.__doc__

    def __repr__(self) -> str:
        return f"<iterable job {self.name} {self.fn!r}>"

    async def __call__(self, job: Job) -> dict[str, Any]:
        host = job._backend
        if host is None or not hasattr(host, "stopping"):
            raise RuntimeError("an iterable job runs only in a worker pool")
        run = _Run(self, job, cast("IterableHost", host))
        return await run.go()


class _Run:
    """One attempt of an iterable job."""

    def __init__(self, runner: IterableRunner, job: Job, host: IterableHost) -> None:
        self.runner = runner
        self.job = job
        self.host = host
        self.store: LongworkScripts = longwork_scripts(host.scripts)
        self.attempt = f"{host.pool_id}:{job._attempt}"
        self.cursor: Any = None
        self.done = 0
        self.prior = 0.0  # run time of the earlier attempts
        self.started = host.clock.now()
        self.written_at = self.started
        self.dirty = False  # items done since the last checkpoint written

    async def go(self) -> dict[str, Any]:
        raw = await self.store.load_checkpoint(self.job.id)
        try:
            saved = Checkpoint.from_json(raw)
        except ValueError as exc:
            raise NonRetryableError(self._unreadable(raw, str(exc))) from None
        start: Any = None  # the cursor as the handler takes it; self.cursor stays its JSON
        if saved is not None:
            self.done, self.prior, self.cursor = saved.done, saved.runtime, saved.cursor
            try:
                start = self.runner._convert(saved.cursor, "cursor")
            except ArgumentMismatch as exc:
                raise JobArgumentError(f"{self.job.name}: checkpoint {exc}") from None
        gen = self.runner.fn(self.job, start)
        try:
            async for value in gen:
                self.cursor, self.done, self.dirty = to_json(value), self.done + 1, True
                await self._after_item()
        except Suspend:
            raise
        except BaseException:
            # an error (retried from the last cursor), a cancellation (stop after the grace,
            # cancel request): keep the items done so far
            if self.dirty and not self.host.abandoned:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._write())
            raise
        finally:
            with contextlib.suppress(Exception):
                await gen.aclose()
        return {"done": self.done, "cursor": self.cursor}

    def _unreadable(self, raw: bytes | None, why: str) -> str:
        """The error of a stored checkpoint that cannot be read: failed before its first item
        (starting over could do again items that must not be; retried, it reads the same)."""
        key, job = self.store.keys.checkpoints, self.job
        return (
            f"{job.name}: its stored checkpoint (field {job.id} of {key}) cannot be read: "
            f"{why}; found {raw!r:.120}. Nothing was run. To start over from the first item: "
            f"HDEL {key} {job.id}; to resume, HSET it to a checkpoint "
            '(\'{"cursor": <the last cursor done>, "done": <items>, "runtime": <s>, "at": '
            "<epoch s>}'); then Client.retry_dead_job (docs/long-jobs.md)"
        )

    async def _after_item(self) -> None:
        if self.host.stopping:
            said = f"checkpointed after {self.done} items"
            try:
                verdict = await self._write()
            except _NOT_WRITTEN as exc:  # requeued all the same: it resumes
                await self._stop_not_written(exc)  # after the last checkpoint written
                verdict = ""
                said = (
                    f"the checkpoint after {self.done} items was refused (not written): "
                    "resumes after the last one written"
                )
            if verdict is None:
                raise Suspend(False, "this attempt no longer holds the job")
            raise Suspend(True, f"pool stopping; {said}")
        # (elapsed < 0: the clock stepped back, an NTP step or a VM resumed; waiting for it to
        # catch up wrote no checkpoint for as long as the step, all replayed after a crash)
        if 0 <= self.host.clock.now() - self.written_at < self.runner.every:
            return
        try:
            verdict = await self._write()
        except _NOT_WRITTEN as exc:
            if isinstance(exc, ResponseError) and not server_refusal(exc):
                raise  # (a key of another type: the run fails, its error naming the key)
            self._not_written(exc)  # Redis away, or refusing writes for its state
            return
        if verdict is None:
            raise Suspend(False, "a checkpoint was refused: this attempt no longer holds the job")
        if verdict in ("cancel", "destroy"):
            await self._cancel(verdict == "destroy")

    def _not_written(self, exc: BaseException) -> None:
        # tried again after checkpoint_every (still dirty), not after the next item: a round
        # trip and a warning per item for the whole of a Redis outage
        self.written_at = self.host.clock.now()
        job = self.job
        log.warning(
            "%s %s: checkpoint not written (%r)", job.name, job.id, exc, extra=job_extra(job)
        )

    async def _stop_not_written(self, exc: BaseException) -> None:
        """The stop's checkpoint was not written: an outage (as ``_not_written``), or refused
        by an error reply (a key of the namespace of another type, named with its repair by
        store/keyrepair.py; READONLY, OOM...): an ERROR, the job requeued all the same."""
        if not isinstance(exc, ResponseError):
            self._not_written(exc)
            return
        job, store = self.job, self.store
        hint = await repair_hint(store.redis, store.keys, exc)
        log.error(
            "%s %s: the checkpoint at the stop was refused by Redis (%s)%s; the job goes back "
            "and resumes after the last checkpoint written",
            job.name,
            job.id,
            describe(exc),
            hint,
            extra=job_extra(job),
        )

    async def _write(self) -> str | None:
        now = self.host.clock.now()
        runtime = self.prior + max(0.0, now - self.started)
        data = Checkpoint(self.cursor, self.done, round(runtime, 3), now).to_json()
        if len(data) > self.runner.max_cursor:  # (the cursor and ~70 bytes of counters)
            self._check_size(data, round(runtime, 3), now)
        verdict = await self.store.checkpoint(self.job.id, self.job.name, self.attempt, data)
        self.written_at, self.dirty = now, False
        return verdict

    def _check_size(self, data: bytes, runtime: float, now: float) -> None:
        """Fail the job for good if the cursor in ``data`` (the checkpoint's JSON) is over
        ``max_cursor`` bytes: retried, it would reach the same cursor again. Not written (nor
        tried again as the run ends: ``dirty`` cleared); the last checkpoint written stays."""
        counters = Checkpoint(None, self.done, runtime, now).to_json()  # (no cursor encoded)
        size = len(data) - len(counters) + len(b"null")
        limit, job = self.runner.max_cursor, self.job
        if size <= limit:
            return
        self.dirty = False
        raise NonRetryableError(
            f"{job.name} {job.id}: the cursor after {self.done} items is {size} bytes of JSON, "
            f"over max_cursor={limit} bytes: not checkpointed (every checkpoint "
            "writes it to Redis and publishes it to event listeners); the last checkpoint "
            "written stays. Yield a small position (an id, an offset), not the data done"
        )

    async def _cancel(self, destroy: bool) -> None:
        """A cancel request whose message this pool missed: cancel the job through the worker
        (settled as cancelled or dropped), and wait here for that cancellation."""
        if not self.host.cancel_job(self.job.id, destroy=destroy):
            raise asyncio.CancelledError
        await asyncio.Event().wait()
