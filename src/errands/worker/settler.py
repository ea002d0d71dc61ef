"""What happens to a job that did not succeed: retry with backoff, bury, drop, cancel, snooze
or requeue. Every outcome is one call of lua/settle.lua, fenced on the job's attempt."""

from __future__ import annotations

import asyncio
import logging
import math
import traceback
from typing import Any

import orjson

from ..backoff import Backoff, ExponentialBackoff, backoff_from_dict
from ..clock import Clock, to_ms
from ..errors import LimiterSnooze, NonRetryableError, RetryLater
from ..handlers import JobType
from ..job import Job
from ..logfmt import describe, job_extra
from ..serialization import JSONSerializer, Serializer
from ..store.connection import REDIS_ERRORS
from ..store.scripts import Fetched, Scripts, Settle, SettleRefused
from ..store.settlecall import settle_chunks
from .results import HISTORY_ARGS_MAX, encode_result, history_json

# (results.py's three: imported from here by loop.py)
__all__ = ["HISTORY_ARGS_MAX", "Settler", "encode_result", "history_json"]

PARKED_CALL = 100  # parked settles sent again per settle.lua call
log = logging.getLogger("errands.worker")


class Settler:
    def __init__(
        self,
        scripts: Scripts,
        pool_id: str,
        clock: Clock,
        serializer: Serializer,
        *,
        dead_max_jobs: int,
        dead_max_age: float,
        history: bool,
        cancelled_ttl: float = 86400.0,
        job_types: dict[str, JobType] | None = None,
    ) -> None:
        self.scripts = scripts
        self.keys = scripts.keys
        self.pool_id = pool_id
        self.clock = clock
        self.serializer = serializer
        self.dead_max_jobs, self.dead_max_age = dead_max_jobs, dead_max_age
        self.history, self.job_types = history, job_types or {}  # (max_concurrency: see _settle)
        self.cancelled_ttl_ms = int(cancelled_ttl * 1000)
        self.json_records = not isinstance(serializer, JSONSerializer)
        self.abandoned = False  # the pool lost its lease: settle nothing more
        # the settles settle.lua refused (see _send_many), by job id: the orphan sweep leaves
        # their jobs in progress; sent again now and then (resend_parked) until they end
        self.parked: dict[str, Settle] = {}

    def envelope_json(self, raw: bytes | None) -> bytes:
        """An envelope stored by a serializer that is not JSON, as JSON for the records
        (result, history) that embed it; ``null`` when it cannot be read."""
        try:
            value = self.serializer.loads(raw) if raw is not None else None
            return orjson.dumps(value, default=repr, option=orjson.OPT_NON_STR_KEYS)
        except Exception:
            return b"null"

    def _settle(self, job: Job, mode: str, target: str, started_ms: int = 0) -> Settle:
        now, jt = self.clock.now(), self.job_types.get(job.name)
        return Settle(
            id=job.id,
            name=job.name,
            mode=mode,
            target=target,
            now_ms=to_ms(now),
            attempt=job.history_attempt,
            started_ms=started_ms,
            dead_max=self.dead_max_jobs,
            dead_min_ms=to_ms(now - self.dead_max_age),
            history=self.history,
            ttl_ms=self.cancelled_ttl_ms,  # for the record if a cancel request turns it
            token=job._attempt,
            history_json=history_json(job) if self.history else b"",
            wake=jt is None or jt.max_concurrency != 0,  # (a slot freed: as loop.py's acks)
        )

    async def requeue(self, *jobs: Job, head: bool = False) -> None:
        """Back on their queues, no failure counted (pool stopping: a job, or a batch's); with
        ``head`` (one job: settle.lua would put several reversed), ahead of its priority's."""
        if head and len(jobs) > 1:
            raise ValueError(f"requeue at the head takes one job, not {len(jobs)}")
        settles = [self._settle(job, "requeue", self.keys.queue(job.name)) for job in jobs]
        for s in settles if head else ():
            s.score_ms = "head"
        await self._send_many(settles)

    async def requeue_fetched(self, item: Fetched, name: str) -> None:
        """Back on its queue, at its place: a job fetched ahead that never started."""
        now_ms = to_ms(self.clock.now())
        s = Settle(item.id, name, "requeue", self.keys.queue(name), now_ms, 1, history=False)
        s.token, s.score_ms = item.token, item.score
        # never started: uncounted from its rates, its key held until started its own again
        s.unstart, s.unstart_spec = True, item.rate_spec or ""
        await self._send(s)

    async def snooze(self, job: Job, exc: RetryLater) -> bool:
        """Run again after ``exc.delay`` seconds, no failure counted (a ``LimiterSnooze`` counted
        in ``s``, against its cap); False if it cannot be built: the caller fails the job."""
        if (built := self.snooze_of(job, exc)) is not None:  # (only building it raises)
            await self._send(built[0])
        return built is not None

    def snooze_of(self, job: Job, exc: RetryLater) -> tuple[Settle, str] | None:
        """:meth:`snoozing` for ``exc``; None (logged) when it cannot be built: fail the job."""
        try:
            return self.snoozing(job, exc.delay, isinstance(exc, LimiterSnooze))
        except Exception as bad:  # its delay set to no number of seconds after it was made
            why, extra = describe(bad), job_extra(job)
            log.error("%s %s: cannot snooze (%s): failed", job.name, job.id, why, extra=extra)
            return None

    def snoozing(self, job: Job, delay: float, counted: bool) -> tuple[Settle, str]:
        """How to settle a snooze of ``job`` (see :meth:`snooze`), and its description: a
        delay of 0 not counted puts it straight back on its queue, as :meth:`requeue`."""
        if not 0 <= delay <= RetryLater.MAX_DELAY:  # (NaN too) settle.lua would refuse it
            raise ValueError(f"a snooze of {delay!r}s")
        if delay <= 0 and not counted:
            return self._settle(job, "requeue", self.keys.queue(job.name)), "snoozed 0s"
        s = self._settle(job, "later", self.keys.scheduled(job.name))
        s.score_ms = to_ms(self.clock.now() + delay)
        if counted:
            env = self.serializer.loads(job._raw) if job._raw is not None else job.envelope()
            env["s"] = job.snoozes + 1
            s.envelope = self.serializer.dumps(env)
        return s, f"snoozed {delay:.3g}s"

    async def cancelled(self, job: Job, started_ms: int, destroy: bool) -> None:
        """A running job cancelled on request: never retried; ``destroy`` removes every trace."""
        s = self._settle(job, "drop" if destroy else "cancelled", self.keys.cancelled, started_ms)
        s.score_ms, s.ttl_ms, s.counter = s.now_ms, self.cancelled_ttl_ms, "cancelled"
        s.history = self.history and not destroy
        await self._send(s)

    async def fail(self, job: Job, jt: JobType, exc: BaseException, started_ms: int) -> str:
        """Count a failure: retry after the backoff, or bury (or drop); its log line's words."""
        s, what = self.failure(job, jt, exc, started_ms)
        await self._send(s)
        return what

    async def fail_many(
        self, jt: JobType, failed: list[tuple[Job, BaseException]], started_ms: int
    ) -> list[str]:
        """``fail`` for several jobs (of a batch), settled in one script call; a job whose error
        is a RetryLater is snoozed instead (no failure counted), as a plain job is. Never raises
        for one job's settle that cannot be built (see :meth:`ending`)."""
        built = [self.ending(job, jt, exc, started_ms) for job, exc in failed]
        await self._send_many([s for s, _what in built if s is not None])
        return [what for _s, what in built]

    def ending(
        self, job: Job, jt: JobType, exc: BaseException, started_ms: int
    ) -> tuple[Settle | None, str]:
        """How to settle ``job`` of a batch ended with ``exc`` (:meth:`snoozing` for a
        RetryLater, else :meth:`failure`), and its description. A snooze that cannot be built
        (:meth:`snooze_of`) is a failure instead; a failure that cannot be built (None) leaves
        the job in progress, to the orphan sweep: an error of one job never ends its batch's
        task."""
        fails = job.fails
        try:
            if isinstance(exc, RetryLater) and (snooze := self.snooze_of(job, exc)) is not None:
                return snooze
            return self.failure(job, jt, exc, started_ms)
        except Exception as bad:
            job.fails = fails
            why, extra = describe(bad), job_extra(job)
            log.exception("%s %s: cannot settle (%s)", job.name, job.id, why, extra=extra)
            return None, "not settled: left in progress"

    def failure(
        self, job: Job, jt: JobType, exc: BaseException, started_ms: int
    ) -> tuple[Settle, str]:
        """How to settle a failure of ``job`` (counted on it), and its description."""
        now = self.clock.now()
        s = self._settle(job, "retry", self.keys.retry(job.name), started_ms)
        job.fails += 1
        max_fails = int((job.retry or {}).get("max_fails", jt.max_fails))
        error = {
            "error": describe(exc),
            "traceback": "".join(traceback.format_exception(exc))[-8000:],
            "at": now,
            "attempt": job.fails,
        }
        final = job.fails >= max_fails or isinstance(exc, NonRetryableError)
        try:
            # retries run with the args as enqueued, whatever the handler did to job.args
            env = self.serializer.loads(job._raw) if job._raw is not None else job.envelope()
            env["f"] = job.fails
            s.envelope = self.serializer.dumps(env)
        except Exception as bad:
            # the handler or a middleware put non-JSON data into args or meta: the job cannot be
            # stored as it is now, so it is buried with the data it was stored with
            why = describe(bad, named=False)
            error["error"] = f"{error['error']} (and it cannot be retried: {why})"
            final = True
        s.error = orjson.dumps(error, default=repr)
        if self.json_records:
            s.envelope_json = self.envelope_json(s.envelope or job._raw)
        if not final:
            delay = retry_delay(job, jt)
            s.score_ms, s.counter = to_ms(now + delay), "failed"
            return s, f"failed (attempt {job.fails} of {max_fails}, retry in {delay:.1f}s)"
        s.mode = "drop" if jt.skip_dead else "dead"
        s.target, s.score_ms = self.keys.dead, to_ms(now)
        s.counter = "dropped" if jt.skip_dead else "dead"
        return s, f"failed for good (attempt {job.fails}, {'dropped' if jt.skip_dead else 'dead'})"

    async def bury_corrupt(self, item: Fetched, name: str, reason: str) -> None:
        """An entry that cannot be decoded goes to the dead set with the reason."""
        now = self.clock.now()
        log.error(
            "%s %s buried: %s", name, item.id, reason, extra={"job_id": item.id, "job_name": name}
        )
        s = Settle(
            id=item.id,
            name=name,
            mode="dead",
            target=self.keys.dead,
            now_ms=to_ms(now),
            attempt=1,
            score_ms=to_ms(now),
            counter="dead",
            dead_max=self.dead_max_jobs,
            dead_min_ms=to_ms(now - self.dead_max_age),
            history=False,
            error=orjson.dumps({"error": reason, "at": now, "attempt": 0}),
            token=item.token,
        )
        if self.json_records:
            s.envelope_json = b"null"
        await self._send(s)

    async def _send(self, s: Settle) -> None:
        """Settle, retrying while Redis is away (like acks). If the pool is stopped first, the
        job stays in its in-progress set and a reaper gives it back once the pool is gone."""
        await self._send_many([s])

    async def _send_many(self, settles: list[Settle]) -> None:
        """Settle jobs in calls of SETTLE_MAX jobs, SETTLE_BYTES at most, each retried as ``_send``
        does (fenced on its attempt: a re-sent call settles nothing twice, answering as before).
        A job refused before any write (:class:`SettleRefused`) is parked; its call's others end."""
        delay = 0.05
        chunks = settle_chunks(self.keys, self.pool_id, settles)
        while not self.abandoned and chunks:
            try:
                outcomes = await self.scripts.settle_report(self.pool_id, chunks[0])
            except Exception as exc:  # not only REDIS_ERRORS (MISCONF, OOM...): keep trying
                level = logging.WARNING if isinstance(exc, REDIS_ERRORS) else logging.ERROR
                first = chunks[0][0]
                log.log(level, "could not settle %s %s (%r); retrying", first.name, first.id, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            for s, outcome in zip(chunks.pop(0), outcomes, strict=True):
                if isinstance(outcome, SettleRefused):
                    self.park(s, outcome)
                elif not outcome:
                    log.warning(
                        "%s %s: not settled (%s): this attempt no longer holds the job "
                        "(taken back from this pool; or settled by this very call, its "
                        "reply lost and its re-send too late: the job was fetched since)",
                        s.name,
                        s.id,
                        s.mode,
                        extra={"job_id": s.id, "job_name": s.name},
                    )

    def park(self, s: Settle, exc: BaseException) -> None:
        """A settle refused: the job stays in progress, held here (the orphan sweep leaves it);
        its settle is sent again about once a minute (see docs/reliability.md)."""
        self.parked[s.id] = s
        log.error(
            "%s %s: not settled (%s), not retried now: refused (%s); left in progress, sent "
            "again about once a minute",
            s.name,
            s.id,
            s.mode,
            exc,
            extra={"job_id": s.id, "job_name": s.name},
        )

    def unpark_orphans(self) -> int:
        """Hand the parked requeues of this pool's orphans (token '*...') back to the orphan
        sweep, which reads the job's attempt again and sends one only if no task here holds
        the job (a bare '*', fenced by the pool, not by an attempt, sent as it was parked
        would put back on its queue a job this pool had fetched again meanwhile: it would run
        twice at once). Returns how many."""
        orphans = [job_id for job_id, s in self.parked.items() if s.token.startswith("*")]
        for job_id in orphans:
            del self.parked[job_id]
        return len(orphans)

    async def resend_parked(self) -> int:
        """Send the parked settles again (settle.lua refuses one still unfit again, writing
        nothing): those a repaired key lets through end here (settled, or fenced off: the job
        was taken back). Returns how many left the parked ones; never raises. An orphan's
        requeue is not among them (see :meth:`unpark_orphans`)."""
        parked = [s for s in self.parked.values() if not s.token.startswith("*")]
        ended = 0
        for start in range(0, len(parked), PARKED_CALL):
            if self.abandoned:
                break
            chunk = parked[start : start + PARKED_CALL]
            try:
                outcomes = await self.scripts.settle_report(self.pool_id, chunk)
            except Exception as exc:
                level = logging.WARNING if isinstance(exc, REDIS_ERRORS) else logging.ERROR
                log.log(level, "sending %d parked settles again failed (%r)", len(chunk), exc)
                break
            for s, outcome in zip(chunk, outcomes, strict=True):
                if not isinstance(outcome, SettleRefused):
                    del self.parked[s.id]
                    ended += 1
                    what = "settled at last" if outcome else "taken back from this pool"
                    log.warning(
                        "%s %s: its parked settle (%s) sent again: %s",
                        s.name,
                        s.id,
                        s.mode,
                        what,
                        extra={"job_id": s.id, "job_name": s.name},
                    )
        return ended


def retry_delay(job: Job, jt: JobType) -> float:
    """Seconds until the retry, capped at ``RetryLater.MAX_DELAY`` as a snooze's; a backoff
    that raises or returns nonsense must not strand the job: the default policy stands in."""
    try:
        delay = float(backoff_for(job, jt).delay(job.fails))
        if math.isfinite(delay) and delay >= 0:
            return min(delay, RetryLater.MAX_DELAY)
        why = f"returned {delay!r}"
    except Exception as exc:
        why = f"raised {type(exc).__name__}: {exc}"
    extra = job_extra(job) | {"attempt": job.fails}  # (the attempt that failed: counted)
    log.error("%s %s: backoff %s; using the default backoff", job.name, job.id, why, extra=extra)
    return ExponentialBackoff().delay(job.fails)


def backoff_for(job: Job, jt: JobType) -> Backoff:
    """The per-job backoff given at enqueue, else the job type's."""
    spec: Any = (job.retry or {}).get("backoff")
    if spec:
        try:
            return backoff_from_dict(spec)
        except (ValueError, KeyError, TypeError):
            extra = job_extra(job) | {"attempt": job.fails}  # (the attempt that failed: counted)
            msg = "%s %s has an invalid per-job backoff %r; using the job type's"
            log.warning(msg, job.name, job.id, spec, extra=extra)
    assert jt.backoff is not None
    return jt.backoff
