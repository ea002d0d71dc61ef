"""Read-only queries behind the Client: job lookup, listings, queues, pools, workers."""

from __future__ import annotations

import logging
from typing import Any

from ..clock import Clock
from ..store.keyrepair import named_read, repair_hint
from ..store.keys import Keys, check_job_name
from ..store.served import registered_pools, served_names, unless_unread
from ..store.stored import stored_count, stored_number, stored_text
from .history import PER_PAGE, history_count, history_page, throughput
from .inputs import count, page_number, reading, text_arg
from .jobinfo import (
    HistoryEntry,
    JobInfo,
    JobStatus,
    Page,
    PoolInfo,
    QueueInfo,
    WorkerInfo,
    decode_json,
    history_from_record,
    info_from_envelope,
    info_from_record,
)
from .jobplaces import read_places, running_places
from .limitsinfo import explain_wait
from .paging import page_entries
from .records import read_done, record_of
from .workflows import waiting_member

log = logging.getLogger("errands.admin")
HMGET_CHUNK = 1_000  # fields per HMGET (workers(): the running jobs of every pool)


def text(value: bytes | str) -> str:
    return stored_text(value)  # (bytes that are not UTF-8: U+FFFD, never raised)


def _num(value: Any, kind: type[int] | type[float]) -> Any:
    """``value`` as ``kind`` when it is a number, else 0 (a corrupt record must not crash)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return kind(value)
    return kind(0)


class Inspection:
    """Queries over one namespace. Every listing tolerates corrupt entries."""

    redis: Any  # redis.asyncio.Redis; typed loosely: its stubs give unions for every reply
    keys: Keys
    clock: Clock

    async def job_names(self) -> list[str]:
        return sorted(text(m) for m in await self.redis.smembers(self.keys.names))

    async def job(self, job_id: str) -> JobInfo | None:
        """The job with its status, or None if unknown (or its record expired)."""
        k = self.keys
        k.done(job_id)  # (checks the id: a str without braces, before Redis sees it)
        raw = await self.redis.hget(k.jobs, job_id)
        if raw is None:
            record = await read_done(self.redis, k, job_id)
            if record is None:  # (or a corrupt record: not a waiting member either)
                return await waiting_member(self.redis, k, job_id)
            return info_from_record(record)
        info = info_from_envelope(job_id, raw, JobStatus.IN_PROGRESS)
        # a corrupt envelope does not say its name: look in the sets of every job name
        names = await self.job_names() if info.corrupt else [info.name]
        scores, (error, checkin, checkpoint) = await read_places(self.redis, k, job_id, names)
        info.error, info.checkin = decode_json(error), decode_json(checkin)
        info.progress = decode_json(checkpoint)
        waiting = [JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.RETRYING]
        statuses = [(n, st) for n in names for st in waiting]
        statuses += [(info.name, JobStatus.DEAD), (info.name, JobStatus.CANCELLED)]
        for (name, status), score in zip(statuses, scores, strict=True):
            if score is not None:
                info.name, info.status = name, status
                if status in (JobStatus.SCHEDULED, JobStatus.RETRYING):
                    info.due_at = score / 1000
                if status in (JobStatus.DEAD, JobStatus.CANCELLED):
                    info.finished_at = score / 1000
                if status == JobStatus.QUEUED:
                    info.waiting_for = await explain_wait(self.redis, k, name, info.partition)
                return info
        rerun = self.redis.zscore(k.dedup_reruns, job_id)
        unread = "the job's status not read"
        if await named_read(self.redis, k, k.dedup_reruns, rerun, unread) is not None:
            info.status = JobStatus.QUEUED  # a dedup rerun, queued once its key's owner ended
            return info
        await self._locate_running(info)
        return info

    async def _locate_running(self, info: JobInfo) -> None:
        found = await unless_unread(
            self._pools("the running job's pool is unknown"), self.keys, log
        )
        pools = [p for p, _beat in found or ()]
        member = f"{info.id}:{info.name}"
        scores = await running_places(self.redis, self.keys, pools, member)
        for pool, score in zip(pools, scores, strict=True):
            if score is not None:
                info.pool_id, info.started_at = pool, score / 1000

    async def _pools(self, unread: str) -> list[tuple[str, float]]:
        """registered_pools: a registry of another type named, with its repair."""
        return await registered_pools(self.redis, self.keys, unread, repair_hint)

    async def _infos(self, ids: list[str], status: str, scores: list[float]) -> list[JobInfo]:
        if not ids:
            return []
        raws = await self.redis.hmget(self.keys.jobs, ids)
        errors = await self.redis.hmget(self.keys.errors, ids)
        out = []
        for job_id, raw, error, score in zip(ids, raws, errors, scores, strict=True):
            info = (
                info_from_envelope(job_id, raw, status)
                if raw is not None
                else JobInfo(id=job_id, name="?", status=status, corrupt=True)
            )
            info.error = decode_json(error)
            if status in (JobStatus.SCHEDULED, JobStatus.RETRYING):
                info.due_at = score / 1000
            elif status in (JobStatus.DEAD, JobStatus.CANCELLED):
                info.finished_at = score / 1000
            out.append(info)
        return out

    async def _merged_page(self, kind: str, status: str, page: int) -> Page[JobInfo]:
        """A page across the per-name scheduled or retry sets, soonest due first."""
        page = page_number(page)
        names = await self.job_names()
        keys = [getattr(self.keys, kind)(n) for n in names]
        start = (reading(page) - 1) * PER_PAGE
        chosen, total = await page_entries(self.redis, keys, start, newest_first=False)
        ids = [text(m) for m, _s in chosen]
        items = await self._infos(ids, status, [s for _m, s in chosen])
        return Page(items, total, page, PER_PAGE)

    async def _set_page(self, key: str, status: str, page: int) -> Page[JobInfo]:
        page = page_number(page)
        start = (reading(page) - 1) * PER_PAGE
        total = int(await self.redis.zcard(key))
        pairs = await self.redis.zrevrange(key, start, start + PER_PAGE - 1, withscores=True)
        ids = [text(m) for m, _s in pairs]
        return Page(await self._infos(ids, status, [s for _m, s in pairs]), total, page, PER_PAGE)

    async def scheduled_jobs(self, page: int = 1) -> Page[JobInfo]:
        return await self._merged_page("scheduled", JobStatus.SCHEDULED, page)

    async def retry_jobs(self, page: int = 1) -> Page[JobInfo]:
        return await self._merged_page("retry", JobStatus.RETRYING, page)

    async def dead_jobs(self, page: int = 1) -> Page[JobInfo]:
        """Newest first."""
        return await self._set_page(self.keys.dead, JobStatus.DEAD, page)

    async def cancelled_jobs(self, page: int = 1) -> Page[JobInfo]:
        return await self._set_page(self.keys.cancelled, JobStatus.CANCELLED, page)

    async def queued_jobs(self, job_name: str, page: int = 1) -> Page[JobInfo]:
        """Jobs waiting on one queue, in the order they will run."""
        page = page_number(page)
        start = (reading(page) - 1) * PER_PAGE
        key = self.keys.queue(check_job_name(job_name))
        total = int(await self.redis.zcard(key))
        pairs = await self.redis.zrange(key, start, start + PER_PAGE - 1, withscores=True)
        ids = [text(m) for m, _s in pairs]
        items = await self._infos(ids, JobStatus.QUEUED, [s for _m, s in pairs])
        return Page(items, total, page, PER_PAGE)

    async def jobs_by_status(self, status: str, page: int = 1) -> Page[JobInfo]:
        """Jobs in one status: queued (all queues), scheduled, retrying, dead, cancelled,
        in_progress. Finished jobs are listed by :meth:`history`."""
        page = page_number(page)
        if status == JobStatus.SCHEDULED:
            return await self.scheduled_jobs(page)
        if status == JobStatus.RETRYING:
            return await self.retry_jobs(page)
        if status == JobStatus.DEAD:
            return await self.dead_jobs(page)
        if status == JobStatus.CANCELLED:
            return await self.cancelled_jobs(page)
        if status == JobStatus.QUEUED:
            return await self._merged_page("queue", JobStatus.QUEUED, page)
        if status == JobStatus.IN_PROGRESS:
            running = [
                JobInfo(
                    id=w.job_id,
                    name=w.job_name,
                    status=status,
                    args=w.args,
                    started_at=w.started_at,
                    checkin=w.checkin,
                    pool_id=w.pool_id,
                )
                for w in await self.workers()
            ]
            start = (page - 1) * PER_PAGE
            return Page(running[start : start + PER_PAGE], len(running), page, PER_PAGE)
        if status == JobStatus.FINISHED:
            raise ValueError("finished jobs are not indexed by status; list them with history()")
        raise ValueError(f"unknown status {status!r}; one of {', '.join(JobStatus.ALL)}")

    async def count_by_status(self) -> dict[str, int]:
        names = await self.job_names()
        k = self.keys
        async with self.redis.pipeline(transaction=False) as pipe:
            for n in names:
                pipe.zcard(k.queue(n))
                pipe.zcard(k.scheduled(n))
                pipe.zcard(k.retry(n))
            pipe.zcard(k.dead)
            pipe.zcard(k.cancelled)
            pipe.hvals(k.running)
            pipe.hget(k.stats, "processed")
            raw = await pipe.execute()
        *per_name, dead, cancelled, running, processed = raw
        return {
            JobStatus.QUEUED: sum(per_name[0::3]),
            JobStatus.SCHEDULED: sum(per_name[1::3]),
            JobStatus.RETRYING: sum(per_name[2::3]),
            JobStatus.IN_PROGRESS: sum(max(0, stored_count(v)) for v in running),
            JobStatus.FINISHED: max(0, stored_count(processed)),
            JobStatus.DEAD: dead,
            JobStatus.CANCELLED: cancelled,
        }

    async def queues(self) -> list[QueueInfo]:
        """Per job name: sizes, latency (wait of the job at the head), paused, limits."""
        names = await self.job_names()
        k = self.keys
        async with self.redis.pipeline(transaction=False) as pipe:
            for n in names:
                pipe.zcard(k.queue(n))
                pipe.zcard(k.scheduled(n))
                pipe.zcard(k.retry(n))
                pipe.hget(k.running, n)
                pipe.sismember(k.paused, n)
                pipe.hget(k.limits, n)
                pipe.zrange(k.queue(n), 0, 0)
            raw = await pipe.execute()
            heads = [raw[7 * i + 6] for i in range(len(names))]
        head_ids = [text(h[0]) for h in heads if h]
        envs = await self.redis.hmget(k.jobs, head_ids) if head_ids else []
        enqueued = {i: decode_json(e) for i, e in zip(head_ids, envs, strict=True)}
        served = await unless_unread(served_names(self.redis, k, repair_hint), k, log)
        now = self.clock.now()
        out = []
        for i, n in enumerate(names):
            q, s, r, running, paused, limit, head = raw[7 * i : 7 * i + 7]
            env = enqueued.get(text(head[0])) if head else None
            # waiting since it was enqueued, or since it came due if it was scheduled
            ready = [env.get(f) for f in ("t", "d")] if isinstance(env, dict) else []
            since = max((float(t) for t in ready if isinstance(t, int | float)), default=None)
            latency = max(0.0, now - since) if since is not None else 0.0
            running = max(0, stored_count(running))  # (corrupt: 0, as missing)
            limit = max(0, stored_count(limit))
            on = None if served is None else n in served  # (None: the registry unread)
            out.append(QueueInfo(n, q, s, r, running, bool(paused), limit, latency, on))
        return out

    async def worker_pools(self) -> list[PoolInfo]:
        """Live (and not yet reaped) pools with their last heartbeat."""
        k = self.keys
        pairs = await self._pools("the pools could not be listed")
        ids = [p for p, _s in pairs]
        async with self.redis.pipeline(transaction=False) as pipe:
            for pool in ids:
                pipe.get(k.pool_info(pool))
                pipe.zcard(k.in_progress(pool))
            raw = await pipe.execute()
        out = []
        for i, (pool, beat) in enumerate(zip(ids, [s for _p, s in pairs], strict=True)):
            info = decode_json(raw[2 * i])
            if not isinstance(info, dict):
                info = {}  # expired or corrupt: report the pool with what is known
            names, quiet = info.get("job_names"), info.get("quiet_since")
            out.append(
                PoolInfo(
                    pool,
                    str(info.get("host", "?")),
                    _num(info.get("pid"), int),
                    _num(info.get("started_at"), float),
                    beat / 1000,
                    _num(info.get("concurrency"), int),
                    [str(n) for n in names] if isinstance(names, list) else [],
                    int(raw[2 * i + 1]),
                    _num(quiet, float) if quiet is not None else None,
                )
            )
        return out

    async def workers(self) -> list[WorkerInfo]:
        """Every running job with its pool, start time and last checkin (pool by pool, in the
        order of the pools' set; each pool's jobs oldest first). Three round trips whatever
        the number of pools: the pools, their in-progress sets in one pipeline, then the
        envelopes and checkins of every running job in one (HMGETs of ``HMGET_CHUNK`` ids)."""
        k = self.keys
        pools = [p for p, _beat in await self._pools("the running jobs could not be listed")]
        async with self.redis.pipeline(transaction=False) as pipe:
            for pool in pools:
                pipe.zrange(k.in_progress(pool), 0, -1, withscores=True)
            sets = await pipe.execute() if pools else []
        running = [
            (pool, text(m).partition(":"), started)
            for pool, pairs in zip(pools, sets, strict=True)
            for m, started in pairs
        ]
        ids = [job_id for _pool, (job_id, _, _name), _s in running]
        envs, checkins = await self._hmgets([k.jobs, k.checkins], ids)
        out: list[WorkerInfo] = []
        for (pool, (job_id, _, name), started), env, checkin in zip(
            running, envs, checkins, strict=True
        ):
            data = decode_json(env)
            args = data.get("a", {}) if isinstance(data, dict) else {}
            out.append(WorkerInfo(pool, job_id, name, args, started / 1000, decode_json(checkin)))
        return out

    async def _hmgets(self, keys: list[str], fields: list[str]) -> list[list[Any]]:
        """HMGET of ``fields`` from each of ``keys``, in one pipeline (commands of at most
        ``HMGET_CHUNK`` fields)."""
        if not fields:
            return [[] for _key in keys]
        chunks = range(0, len(fields), HMGET_CHUNK)
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                for start in chunks:
                    pipe.hmget(key, fields[start : start + HMGET_CHUNK])
            replies = iter(await pipe.execute())
        return [[value for _start in chunks for value in next(replies)] for _key in keys]

    async def history(self, page: int = 1, job_name: str | None = None) -> Page[HistoryEntry]:
        """Every finished, failed, dead and cancelled attempt, newest first."""
        return await history_page(self.redis, self.keys, page, job_name)

    async def history_job(self, job_id: str, max_attempts: int = 100) -> list[HistoryEntry]:
        """The recorded attempts of one job, oldest first."""
        self.keys.done(job_id)  # (checks the id)
        max_attempts = count("max_attempts", max_attempts, most=100_000)
        fields = [f"{job_id}:{i}" for i in range(1, max_attempts + 1)]
        fields += [f"{job_id}:e{i}" for i in range(1, 51)]  # its edits (Client.update_job)
        raws = await self.redis.hmget(self.keys.history_data, fields)
        entries = [e for e in (history_from_record(record_of(r, job_id)) for r in raws) if e]
        return sorted(entries, key=lambda e: e.finished_at or 0.0)

    async def find_job_ids(self, prefix: str, limit: int = 20, budget: int = 20_000) -> list[str]:
        """Ids of live jobs, and of jobs with recorded attempts, that start with ``prefix``
        (sorted; at most ``limit``). Scans at most about ``budget`` entries of each index."""
        prefix, limit = text_arg("prefix", prefix), count("limit", limit)
        budget = count("budget", budget)
        pattern = "".join("\\" + c if c in "*?[]\\" else c for c in prefix) + "*"
        found: set[str] = set()
        for key in (self.keys.jobs, self.keys.history_data):
            seen, cursor = 0, 0
            while seen < budget and len(found) < limit:
                cursor, fields = await self.redis.hscan(key, cursor, match=pattern, count=1000)
                seen += 1000
                found |= {text(f).rsplit(":", 1)[0] if key != self.keys.jobs else text(f)
                          for f in fields}  # fmt: skip
                if cursor == 0:
                    break
        return sorted(found)[:limit]

    async def history_count(self, job_name: str | None = None) -> int:
        return await history_count(self.redis, self.keys, job_name)

    async def stats(self) -> dict[str, int]:
        """Namespace-wide counters: ``processed``, ``failed`` (retried), ``dead``..."""
        raw = await self.redis.hgetall(self.keys.stats)
        return {text(k): n for k, v in raw.items() if (n := stored_number(v)) is not None}

    async def throughput(
        self, minutes: int = 60, now: float | None = None
    ) -> list[tuple[float, int, int]]:
        """Per minute of the last ``minutes``, oldest first: (minute start, attempts that ended,
        jobs that died). Counted with ZCOUNT over the history and the dead set, so it costs
        nothing on the hot path; attempts read 0 while pools run with ``history=False``."""
        minutes = count("minutes", minutes, most=100_000)
        end = (int(self.clock.now() if now is None else now) // 60 + 1) * 60_000
        return await throughput(self.redis, self.keys, end, minutes)
