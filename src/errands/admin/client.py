"""The admin API: inspect and operate queues and jobs. The CLI and the dashboard use it.

>>> client = Client.from_url("redis://localhost:6379/0", namespace="myapp")
>>> info = await client.job(job_id)            # JobInfo with status, args, error, result...
>>> await client.cancel(job_id); await client.retry_dead_job(other_id)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson

from ..building import unique_after_edit
from ..checks import seconds
from ..clock import Clock, SystemClock, to_ms
from ..errors import DedupKeyHeldError, JobChangedError, JobNotFoundError, UniqueLockHeldError
from ..handlers import check_priority
from ..limits import Limit
from ..periodic.admin import ScheduleAdmin
from ..store.connection import connect, redact_url
from ..store.foreign import let_go_foreign, watch_client
from ..store.keys import Keys, check_job_name
from ..store.scripts import Scripts
from ..store.topology import RedisClient, as_redis, is_cluster
from .bulk import each_dead
from .endings import gone_answer, unless_changed, until_dropped
from .events import EventStream, wait_result
from .hub import EventHub
from .inputs import at_seconds, checked_id, encoded_args, text_arg
from .inspection import Inspection, text
from .jobinfo import JobInfo, JobStatus, info_from_envelope
from .limitsinfo import LimitsView, Partitions, read_limits, read_partitions, write_limits
from .pools import PoolAdmin
from .relock import NO_KEY, NO_LOCK, key_again, lock_again
from .serverinfo import ServerInfo
from .unavailable import reports_unavailable
from .workflows import WorkflowAdmin

__all__ = ["Client"]

CANCELLED_TTL_MS = 86_400_000


@reports_unavailable
class Client(Inspection, ScheduleAdmin, WorkflowAdmin, PoolAdmin, ServerInfo):
    """``Client(redis, namespace=...)`` or ``Client.from_url(url, namespace=...)``.

    Redis unreachable: every method raises ``RedisUnavailableError`` naming the server."""

    def __init__(
        self, redis: RedisClient, *, namespace: str = "errands", clock: Clock | None = None
    ) -> None:
        self.redis: Any = as_redis(redis)
        watch_client(self.redis)  # a forked child's calls never use the parent's sockets
        self.keys = Keys(namespace)
        self.scripts = Scripts(self.redis, self.keys)
        self.clock: Clock = clock or SystemClock()
        self._owns_client = False
        self.where: str | None = None  # the URL given to from_url, password hidden
        # one subscription for every result() and events() of this client (subscribed lazily)
        self.hub = EventHub(self.redis, self.keys)

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> Client:
        client = cls(connect(text_arg("url", url)), **kwargs)
        client._owns_client = True
        client.where = redact_url(url)
        return client

    async def aclose(self) -> None:
        await self.hub.aclose()
        if self._owns_client:
            if not is_cluster(self.redis):  # (used on a loop closed since: its sockets closed here)
                let_go_foreign(self.redis.connection_pool)
            await self.redis.aclose()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- job types ---------------------------------------------------------------------------
    async def pause(self, job_name: str) -> None:
        """Stop every pool from fetching ``job_name``; its jobs wait on the queue."""
        check_job_name(job_name)
        await self.redis.sadd(self.keys.paused, job_name)

    async def set_limits(
        self, job_name: str, limits: Sequence[Limit] | None, *, strict: bool | None = False
    ) -> None:
        """Replace the limits of a job type at run time, in Redis: every pool applies them
        within a second (``max_concurrency=`` of the pools' code stays). ``None`` goes back to
        the limits of the pools' code. A name no running pool serves (a typo?) logs a warning
        on the ``errands.admin`` logger, and the limits are stored (pools may start later);
        ``strict=True`` raises ``UnknownJobError`` instead, ``strict=None`` skips the check.
        See docs/limits.md."""
        check_job_name(job_name)
        await write_limits(self.redis, self.keys, job_name, limits, strict)

    async def limits(self) -> dict[str, LimitsView]:
        """The job types with limits: as registered in the pools' code, as set at run time,
        and the ones that apply (``effective``)."""
        return await read_limits(self.redis, self.keys)

    async def partitions(self, job_name: str, limit: int = 50) -> Partitions:
        """The partitions of a job type with work (ready, rate limited, running): counts, and
        the first ``limit`` with their backlog and state. See docs/limits.md."""
        return await read_partitions(self.redis, self.keys, check_job_name(job_name), limit)

    async def unpause(self, job_name: str) -> None:
        """Let pools fetch ``job_name`` again (idle pools are woken at once)."""
        await self.redis.srem(self.keys.paused, check_job_name(job_name))
        await self.redis.publish(self.keys.wake_channel, "unpause")

    async def paused(self) -> set[str]:
        return {text(m) for m in await self.redis.smembers(self.keys.paused)}

    async def queue_sizes(self) -> dict[str, dict[str, int]]:
        """Per job name: jobs queued, scheduled, retrying and running now."""
        return {
            q.name: {
                "queued": q.queued,
                "scheduled": q.scheduled,
                "retry": q.retrying,
                "running": q.running,
            }
            for q in await self.queues()
        }

    async def dead_count(self) -> int:
        return int(await self.redis.zcard(self.keys.dead))

    # -- single jobs -------------------------------------------------------------------------
    async def _require(self, job_id: str) -> JobInfo:
        info = await self.job(job_id)
        if info is None:
            await self._confirm_absent()
            raise JobNotFoundError.for_id(job_id)
        return info

    async def _confirm_absent(self) -> None:
        """Before answering "no such job" from a read: a write that changes nothing (not
        replicated), which a master demoted by a failover refuses (READONLY: the client goes
        to the new master), where its data as it was would say the job does not exist while
        the new master holds it waiting or running (a cancel reported impossible, the job run)."""
        await self.redis.hdel(self.keys.jobs, "")

    async def cancel(self, job_id: str) -> str:
        """Cancel a job: a waiting one never runs; a running one has its handler cancelled by
        its pool (within about a second; a pool that is gone, not yet reaped: cancelled by the
        reaper that takes its jobs back) and is not retried. Returns ``cancelled``,
        ``running`` (signalled; either pool), ``dead``, ``already`` (also: a workflow member
        its run ended cancelled), ``finished`` or ``ended`` (its tombstone is all that is
        left: no record says how); unknown ids raise JobNotFoundError."""
        info = await self.job(job_id)
        if info is not None:
            # (a finished job too: lua/cancel.lua answers "finished" from its result record, and
            # a master demoted by a failover refuses that answer, where a read here gave it)
            now, call = to_ms(self.clock.now()), os.urandom(8).hex()  # (see lua/cancel.lua)
            result = await self.scripts.cancel(job_id, info.name, now, CANCELLED_TTL_MS, call)
            if result != "unknown":
                return result
        answer = await gone_answer(self.redis, self.keys, job_id)  # (admin/endings.py)
        await self._confirm_absent()  # (answers read: a demoted master refuses them)
        if answer is None:
            raise JobNotFoundError.for_id(job_id)
        return answer

    async def destroy(self, job_id: str, wait: float | None = None) -> bool:
        """Remove every trace of a job, wherever it is (lua/destroy.lua); a running one is
        dropped by its pool after this returns: ``wait`` seconds waits for it (TimeoutError)."""
        wait = None if wait is None else seconds("wait", wait)
        info = await self.job(job_id)
        if info is None:
            await self._confirm_absent()
            return False
        # (a corrupt job found in a job name's set has that name; one found nowhere has "?")
        last = info.previous_attempts + info.fails + 2
        call = os.urandom(8).hex()  # (its re-send answers as the first: lua/destroy.lua)
        status = await self.scripts.destroy(job_id, info.name, last, info.edits, call)
        if status == "running" and wait is not None:
            await until_dropped(self.hub, job_id, wait)
        return status != "unknown"

    async def reschedule(self, job_id: str, at: datetime | float) -> bool:
        """Move a scheduled, retrying, dead or cancelled job to run at ``at`` (a datetime, naive
        = UTC, or epoch seconds up to 9999; a past time queues it now). A dead or cancelled job
        retakes its ``enqueue_unique`` lock or ``dedup=`` key, or raises UniqueLockHeldError
        (DedupKeyHeldError); JobChangedError if changed since read; False if corrupt."""
        when = at_seconds(at)
        first = await self.redis.hget(self.keys.jobs, checked_id(self.keys, job_id))
        info = await self._require(job_id)  # (a change after ``first`` fails the move)
        k = self.keys
        source = {
            JobStatus.SCHEDULED: k.scheduled(info.name),
            JobStatus.RETRYING: k.retry(info.name),
            JobStatus.DEAD: k.dead,
            JobStatus.CANCELLED: k.cancelled,
        }.get(info.status)
        if source is None:
            only = "only scheduled, retrying, dead or cancelled jobs can be rescheduled"
            raise ValueError(f"job {job_id} is {info.status}; {only}")
        if info.corrupt:  # (its name unread, so its queue: not moved, as retry_dead_job)
            return False
        now = self.clock.now()
        mode = "queue" if when <= now else "schedule"
        envelope, read = await self._renumbered(info, first)
        read = read or first or b""  # (the move checks it)
        unique, dedup = NO_LOCK, NO_KEY
        if info.status in (JobStatus.DEAD, JobStatus.CANCELLED):  # (admin/relock.py)
            unique, dedup = lock_again(read, when, now), key_again(read, info.name)
        due, at = to_ms(when), to_ms(now)
        moved = await self.scripts.move(
            job_id, info.name, source, mode, due, envelope, at, False, read, "", unique, dedup
        )
        return await unless_changed(self.redis, moved, job_id, source, "rescheduled")

    async def _renumbered(self, info: JobInfo, raw: bytes | None = None) -> tuple[bytes, bytes]:
        """The envelope for a job about to run again when the attempt it would run next is
        recorded already (a cancel is recorded without counting a failure): it counts one more
        previous attempt, so the next run does not overwrite that record; with the envelope it
        was made from. Empty (keep the stored one) otherwise, and for an envelope that is not
        JSON. Numbered from ``raw`` (the envelope the caller read first), or one read here."""
        raw = raw or await self.redis.hget(self.keys.jobs, info.id)
        if info.corrupt or raw is None or (read := info_from_envelope(info.id, raw, "")).corrupt:
            return b"", b""
        next_attempt = f"{info.id}:{read.previous_attempts + read.fails + 1}"
        if not await self.redis.hexists(self.keys.history_data, next_attempt):
            return b"", b""
        env = orjson.loads(raw)
        env["h"] = int(env.get("h") or 0) + 1  # (of the envelope read: the move checks it)
        return orjson.dumps(env), raw

    async def run_scheduled_now(self, job_id: str) -> bool:
        info = await self._require(job_id)
        if info.status != JobStatus.SCHEDULED:
            return False
        return await self.scripts.move(job_id, info.name, self.keys.scheduled(info.name), "queue")

    async def retry_dead_job(self, job_id: str) -> bool:
        """Queue a dead job again with its failure count reset. False for a job not dead (or
        corrupt); JobChangedError for one that changed while this call ran (edited, or retried
        by another call and dead again): nothing moved, as a retry built from a stale read.
        A job of ``enqueue_unique`` takes its lock again, one of ``dedup=`` its key;
        UniqueLockHeldError (DedupKeyHeldError), nothing moved, when another live job holds it."""
        raw = await self.redis.hget(self.keys.jobs, checked_id(self.keys, job_id))
        if raw is None or await self.redis.zscore(self.keys.dead, job_id) is None:
            await self._confirm_absent()  # (not dead here: the new master may hold it dead)
            return False
        info = info_from_envelope(job_id, raw, JobStatus.DEAD)
        if info.corrupt:
            return False
        env = orjson.loads(raw)
        # failures start again from 0; the history numbers the attempts after the old ones, and
        # after a record at the attempt it would run next (a burial's: see _renumbered)
        h = info.previous_attempts + info.fails
        env["h"] = h + await self.redis.hexists(self.keys.history_data, f"{job_id}:{h + 1}")
        env.pop("f", None)
        new, now = orjson.dumps(env), self.clock.now()
        unique = lock_again(raw, now, now)  # (its enqueue_unique lock: admin/relock.py)
        dedup = key_again(raw, info.name)  # (its Dedup key, as well)
        dead, at = self.keys.dead, to_ms(now)
        moved = await self.scripts.move(
            job_id, info.name, dead, "queue", 0, new, at, True, raw, "", unique, dedup
        )
        return await unless_changed(self.redis, moved, job_id, dead, "retried")

    async def update_job(
        self, job_id: str, *, args: Mapping[str, Any] | None = None, priority: int | None = None
    ) -> JobInfo:
        """Give a waiting (queued, scheduled, retrying) or dead job new ``args`` and/or a new
        ``priority``, before retrying it say. The edit is recorded in the job's history
        (status ``edited``, with what it replaced). A waiting job's ``enqueue_unique`` lock on
        its args moves to the new ones. Returns the job as it is now; raises JobNotFoundError
        for an unknown job, ValueError for a job in another state or for args another job holds
        the lock of."""
        if args is None and priority is None:
            raise ValueError("give args and/or priority")
        if args is not None and not isinstance(args, Mapping):
            raise TypeError(f"args must be a dict, got {type(args).__name__}")
        if priority is not None:
            check_priority(priority)
        for _ in range(10):  # the job may move or change meanwhile: look again
            info = await self._require(job_id)
            source = await self._edit_source(info)
            raw = await self.redis.hget(self.keys.jobs, job_id)
            if raw is None:
                continue
            env, now = orjson.loads(raw), to_ms(self.clock.now())
            before = {"args": env.get("a", {}), "priority": env.get("p", 0)}
            digests = ("", "")
            if args is not None:  # (a unique lock on the args moves with them: update_job.lua)
                new_args = encoded_args(info.name, args)  # (as enqueue encodes them)
                digests = unique_after_edit(info.name, env, new_args)
                env["a"] = new_args
            if priority is not None:
                env["p"] = priority
            info = info_from_envelope(job_id, raw, info.status)  # (an edit since counts)
            edit = info.edits + 1
            env["e"] = edit
            attempt = info.previous_attempts + info.fails
            record = {"id": job_id, "status": "edited", "job": env, "started": now}
            record |= {"finished": now, "attempt": attempt, "result": {"before": before}}
            new, rec = orjson.dumps(env), orjson.dumps(record)
            ok = await self.scripts.update_job(
                job_id, info.name, source, raw, new, priority, edit, rec, now, digests
            )
            if ok == -1:
                raise ValueError(
                    f"job {job_id} not edited: another job waits with these args "
                    "(enqueued with enqueue_unique, it holds their lock)"
                )
            if ok:
                return await self._require(job_id)
        raise ValueError(f"job {job_id} kept moving; not edited")

    async def _edit_source(self, info: JobInfo) -> str:
        k = self.keys
        rerun = await self.redis.zscore(k.dedup_reruns, info.id)
        if info.status == JobStatus.QUEUED and rerun is not None:
            return k.dedup_reruns  # a dedup rerun waiting for its key's owner (docs/dedup.md)
        source = {
            JobStatus.QUEUED: k.queue(info.name),
            JobStatus.SCHEDULED: k.scheduled(info.name),
            JobStatus.RETRYING: k.retry(info.name),
            JobStatus.DEAD: k.dead,
        }.get(info.status)
        if source is None or info.corrupt:
            edits = "only queued, scheduled, retrying or dead jobs can be edited"
            raise ValueError(f"job {info.id} is {info.status}: {edits}")
        return source

    async def delete_dead_job(self, job_id: str) -> bool:
        return await self._delete_from(job_id, lambda _name: self.keys.dead)

    async def delete_scheduled_job(self, job_id: str) -> bool:
        return await self._delete_from(job_id, self.keys.scheduled)

    async def delete_retry_job(self, job_id: str) -> bool:
        return await self._delete_from(job_id, self.keys.retry)

    async def delete_queued_job(self, job_id: str) -> bool:
        return await self._delete_from(job_id, self.keys.queue)

    async def delete_cancelled_job(self, job_id: str) -> bool:
        return await self._delete_from(job_id, lambda _name: self.keys.cancelled)

    async def _delete_from(self, job_id: str, source: Callable[[str], str]) -> bool:
        """Delete a job if it is (still) in ``source(its name)``: one script, which records
        the deletion in its history and publishes it (event ``deleted``)."""
        info = await self.job(job_id)
        name = info.name if info is not None else "?"  # an entry without its job
        # (a job settled without a failure counted, cancelled, snoozed or requeued, has a record
        # at the attempt it would run next: the deletion's is the one after, not overwriting it)
        envelope, read = await self._renumbered(info) if info is not None else (b"", b"")
        now_ms, call = to_ms(self.clock.now()), os.urandom(8).hex()  # (call: see lua/move.lua)
        return await self.scripts.move(
            job_id, name, source(name), "delete", 0, envelope, now_ms, False, read, call
        )

    async def retry_all_dead_jobs(self) -> int:
        """Queue again, once each, the jobs in the dead set now (those that die again meanwhile
        are not retried again; corrupt entries and ids errands never accepts are skipped).
        Returns how many were queued. Oldest first, 64 at once: an error is raised once all
        were tried (admin/bulk.py)."""

        async def retry(job_id: str) -> bool:
            try:
                return await self.retry_dead_job(job_id)
            except (JobChangedError, UniqueLockHeldError, DedupKeyHeldError):  # (changed, or
                return False  # another job holds its lock or Dedup key: skipped, it stays dead)

        return await each_dead(self.redis, self.keys, retry, remove_others=False)

    async def delete_all_dead_jobs(self) -> int:
        """Delete the jobs in the dead set now (corrupt entries included, and members that are
        no id errands accepts: removed from the set); as retry_all."""
        return await each_dead(self.redis, self.keys, self.delete_dead_job, remove_others=True)

    async def result(self, job_id: str, timeout: float | None = None) -> Any:
        """Wait for a job's return value (pub/sub, no polling). Raises JobFailedError,
        JobCancelledError, JobNotFoundError, or TimeoutError after ``timeout`` seconds (0: one
        look at the job's stored state; however small, a job that ended answers)."""
        return await wait_result(self.hub, job_id, timeout)

    def events(self) -> EventStream:
        """Lifecycle events of every job in the namespace: enqueued, started, finished, failed,
        dead, dropped, cancelled and progress (dicts with ``event``, ``id``, ``name``).

        >>> async with client.events() as events:   # subscribed from here on
        ...     job = await enqueuer.enqueue("send_email", {})
        ...     async for event in events: ...
        """
        return EventStream(self.hub)
