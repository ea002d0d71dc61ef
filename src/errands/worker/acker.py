"""Batched acknowledgements: jobs that succeeded are acked by one ``ack.lua`` call per batch.

Acks accumulate while a call is in flight, so under load each call carries many jobs. A failed
call is retried with backoff (the jobs stay in the pool's in-progress set meanwhile; if the pool
dies first, a reaper requeues them: at-least-once). A job's "done" line is logged once its ack
went through; an ack the fence refused (the job was taken back from this pool) is logged as such.
A job ack.lua leaves alone as unfit (a key of its workflow run or of its job name holds another
type, a running count of its name or partition is not a number) is logged as an error and
parked: not retried with the others (one such job does not hold them); it stays in progress,
held here, and its ack is sent again about once a minute (:meth:`Acker.resend_parked`, from the
fetch loop) until a repaired key lets it end, or until the pool is gone (see
docs/reliability.md). The jobs of a job name one of whose own keys holds another type are
logged once for the name, naming the key and its repair (worker/namekeys.py), not job by job.
"""

from __future__ import annotations

import asyncio
import logging

from ..aio import cancel_and_wait
from ..clock import Clock, to_ms
from ..logfmt import job_extra
from ..outagelog import OutageLog
from ..store.connection import REDIS_ERRORS
from ..store.scripts import Acked, Scripts
from ..workflows.store import WorkflowScripts
from .namekeys import NameKeys
from .repairs import log_refusal

__all__ = ["Acker"]

log = logging.getLogger("errands.worker")


class Acker:
    def __init__(self, scripts: Scripts, pool_id: str, clock: Clock, history: bool) -> None:
        self.scripts = scripts
        self.pool_id = pool_id
        self.clock = clock
        self.history = history
        self.pending: list[Acked] = []
        self.inflight: list[Acked] = []
        self._outage = OutageLog(log, "acker (acknowledges finished jobs)")
        self._wake = False
        self._members = False  # a workflow member's ack is pending (its run's walks go on after)
        self._soon = False  # the flusher's wake-up is scheduled (add)
        self._add_loop: asyncio.AbstractEventLoop | None = None  # (add's, once it ran)
        self._event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._walks: asyncio.Task[None] | None = None
        self.workflows = WorkflowScripts(scripts.redis, scripts.keys)
        self.refused = 0
        self.unfit = 0  # acks ack.lua left alone (a key of the job's workflow run is unfit)
        # those acks by id: held (the orphan sweep leaves them in progress), sent again now and
        # then (resend_parked) until they end or the pool is gone
        self.parked: dict[str, Acked] = {}
        self.bad_keys = NameKeys(scripts.redis, scripts.keys)  # (the names' keys it logged)
        self._abandoned = False  # (abandon: the lease lost)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="errands-acker")

    def add(self, acked: Acked, wake: bool) -> None:
        """Queue an ack; ``wake`` asks idle pools to fetch again (a concurrency slot freed).
        The flusher is woken a turn of the event loop later: a batch of short jobs ends in one
        turn, and the jobs started in their slots (worker/loop.py) reach their first await
        before the flusher's call is built (which then carries the acks of the whole batch)."""
        self.pending.append(acked)
        self._wake = self._wake or wake
        job = acked.job  # (a workflow member's: job.workflow_id, without its property's call)
        if job is not None and job._wf and job._wf[0]:
            self._members = True
        if not self._soon:
            self._soon = True
            loop = self._add_loop
            if loop is None:  # (the first ack: get_running_loop() is a system call on 3.11)
                loop = self._add_loop = asyncio.get_running_loop()
            loop.call_soon(self._set)

    def _set(self) -> None:
        self._soon = False
        self._event.set()

    @property
    def idle(self) -> bool:
        return not self.pending and not self.inflight

    def holding(self) -> set[str]:
        """Ids of the jobs finished here but not yet acknowledged (those left alone as unfit
        included: the orphan sweep must not run them again while this pool lives)."""
        return {a.id for a in self.pending} | {a.id for a in self.inflight} | self.parked.keys()

    def held_names(self) -> set[str]:
        """The job names the pool's fetches leave alone: those with a parked ack whose own key
        holds another type (worker/namekeys.py; or whose keys' types are being read for it),
        each of whose jobs run now would be parked
        too, held in memory and in progress. Their jobs wait on their queue; each round of
        parked acks tells again (:meth:`resend_parked`: a repaired key ends their parked acks,
        and the name is fetched again). Empty (no loop) while nothing is parked."""
        bad, checking = self.bad_keys.logged, self.bad_keys.checking
        if not self.parked or not (bad or checking):
            return set()
        return {a.name for a in self.parked.values() if a.name in bad or a.name in checking}

    async def _loop(self) -> None:
        while True:
            await self._event.wait()
            self._event.clear()
            await self.flush()

    async def flush(self) -> None:
        delay = 0.05
        while self.pending:
            # every ack pending (Scripts.ack_report sends at most ACK_MAX per script call; a
            # failure sends them all again: each call is idempotent on re-send)
            batch, self.pending = self.pending, []
            wake, self._wake = self._wake, False
            members, self._members = self._members, False
            self.inflight = batch
            try:
                report = await self.scripts.ack_report(
                    self.pool_id, batch, wake, to_ms(self.clock.now()), self.history
                )
            except Exception as exc:  # not only REDIS_ERRORS: the flusher must never die
                self.pending[:0] = batch
                self._wake = self._wake or wake
                self._members = self._members or members
                if isinstance(exc, REDIS_ERRORS):
                    self._outage.failed(exc)
                elif not await log_refusal(
                    self._outage, exc, self.scripts.redis, self.scripts.keys
                ):
                    log.error(
                        "ack of %d jobs failed (%r); retrying in %.2fs", len(batch), exc, delay
                    )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            finally:
                self.inflight = []
            self._outage.ok()
            unfit = set(report.unfit)
            self._log(batch, set(report.refused), unfit)
            if unfit:
                await self._note_unfit(batch, unfit, report.refused)
            if members:  # (noted by add(), job by job: no second pass over the batch here)
                self._continue_walks()

    def _continue_walks(self) -> None:
        """An ack of workflow members may have left dependents on the work list (a member's end
        walks 200 of them): continue them now, in the background, rather than at the next
        requeuer pass (which continues whatever this leaves, also when this pool dies)."""
        if self._walks is None or self._walks.done():
            self._walks = asyncio.create_task(self._walk(), name="errands-workflow-walks")

    async def _walk(self) -> None:
        try:
            await self.workflows.cascade_all()
        except Exception as exc:  # the requeuer's next pass continues them
            level = logging.WARNING if isinstance(exc, REDIS_ERRORS) else logging.ERROR
            log.log(level, "continuing workflow walks failed (%r); the requeuer will", exc)

    def _log(self, batch: list[Acked], refused: set[str], unfit: set[str]) -> None:
        self.refused += len(refused)
        self.unfit += len(unfit)
        if not refused and not unfit and not log.isEnabledFor(logging.INFO):
            return  # (the common case: no line to write)
        for a in batch:
            extra = job_extra(a.job) if a.job is not None else {}
            if a.id in unfit:
                self.parked[a.id] = a  # (logged by _note_unfit)
            elif a.id in refused:
                log.warning(
                    "%s %s finished but not acknowledged: its attempt was taken back from this "
                    "pool (the job runs, or ran, elsewhere)",
                    a.name,
                    a.id,
                    extra=extra,
                )
            elif log.isEnabledFor(logging.INFO):
                log.info("%s %s done in %.1fms", a.name, a.id, a.ran_ms, extra=extra)

    async def _note_unfit(self, batch: list[Acked], unfit: set[str], refused: list[str]) -> None:
        """The jobs of ``batch`` left alone as unfit, parked by :meth:`_log`: those of a name one
        of whose own keys holds another type are logged once per name (worker/namekeys.py),
        the others (a key of their workflow run, a running count) one line each; ``refused``:
        those the fence refused."""
        explained = await self.bad_keys.note(batch, unfit, refused)
        for a in batch:
            if a.id not in unfit or (explained is not None and a.name in explained):
                continue
            log.error(
                "%s %s finished but not acknowledged: a key of its workflow run or of its "
                "job name holds another type, or the running count of its job name or of "
                "its partition is not a number: left in progress, sent again about once a "
                "minute (see docs/reliability.md)",
                a.name,
                a.id,
                extra=job_extra(a.job) if a.job is not None else {},
            )

    async def resend_parked(self) -> int:
        """Send the parked acks again (ack.lua is idempotent on re-send: one still unfit is left
        alone again, nothing written): those a repaired key lets through end here, those the
        fence refuses (the job was taken back) are forgotten. Returns how many left the parked
        ones; never raises (the next round tries again)."""
        batch = list(self.parked.values())
        if not batch:
            return 0
        try:
            report = await self.scripts.ack_report(
                self.pool_id, batch, True, to_ms(self.clock.now()), self.history
            )
        except Exception as exc:
            level = logging.WARNING if isinstance(exc, REDIS_ERRORS) else logging.ERROR
            log.log(level, "sending %d parked acks again failed (%r)", len(batch), exc)
            return 0
        unfit, refused = set(report.unfit), set(report.refused)
        ended = [a for a in batch if a.id not in unfit]
        await self.bad_keys.note(batch, unfit, refused)
        for a in ended:
            del self.parked[a.id]
            extra = job_extra(a.job) if a.job is not None else {}
            what = "taken back from this pool" if a.id in refused else "acknowledged at last"
            log.warning("%s %s: its parked ack sent again: %s", a.name, a.id, what, extra=extra)
        if any(a.job is not None and a.job.workflow_id for a in ended):
            self._continue_walks()
        return len(ended)

    def abandon(self) -> int:
        """The lease is lost: drop the acks not written (their jobs were given to other pools)
        and stop. Returns how many were dropped."""
        dropped = len(self.pending) + len(self.inflight)
        self.pending = []
        self._abandoned = True  # (close sends no parked ack)
        for task in (self._task, self._walks):
            if task is not None:
                task.cancel()
        return dropped

    async def close(self, timeout: float = 10.0) -> None:
        """Flush what is left, the batch in flight included, send the parked acks once more (a
        key repaired since their last round lets them end: else a reaper would run their jobs
        again), all within ``timeout``, and stop."""
        if self._task is None:
            return
        try:
            async with asyncio.timeout(timeout):
                while not self.idle:
                    if self._task.done():
                        await self.flush()
                    else:  # the flusher writes it (a batch may be in flight): wait for it
                        self._event.set()
                        await asyncio.sleep(0.01)
                if self.parked and not self._abandoned:
                    await self.resend_parked()
        except TimeoutError:
            if self.pending:
                log.error(
                    "could not flush %d acks; the reaper will recover those jobs",
                    len(self.pending),
                )
        if self.parked and not self._abandoned:
            log.warning(
                "%d parked acks not acknowledged at the stop (their keys still of another type, "
                "or no time left): their jobs stay in progress, given back to their queues by a "
                "reaper once this pool is gone and their keys repaired (see docs/reliability.md)",
                len(self.parked),
            )
        await cancel_and_wait([t for t in (self._task, self._walks) if t is not None])
