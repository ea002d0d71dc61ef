"""The Enqueuer: what web apps ``await`` to put jobs in Redis."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from .admin.events import wait_result
from .admin.hub import EventHub
from .backoff import RetryOptions
from .building import Built, build_job, build_many, kept_built, plain_job, random_id, unique_digest
from .checks import MAX_SECONDS, seconds
from .clock import Clock, SystemClock, to_ms
from .dedup import Dedup
from .dedup.enqueue import store_deduplicated, with_dedup
from .errors import RedisUnavailableError, UnknownJobError
from .job import Job
from .limits import check_partition
from .middleware import as_enqueue
from .serialization import (
    JSONSerializer,
    PayloadTooLargeError,
    PlainEnvelopes,
    SerializationError,
    Serializer,
    dumps_json,
)
from .store.bulk import call_slices, columns
from .store.coalescer import Coalescer
from .store.connection import REDIS_ERRORS, connect, describe, redact_url
from .store.foreign import let_go_foreign, watch_client
from .store.keyrepair import repair_hint
from .store.keys import Keys
from .store.pinned import BulkEnqueue, PinnedEnqueue
from .store.replication import ReplicatedScripts
from .store.scripts import Scripts
from .store.served import served_names, unserved_message
from .store.topology import RedisClient, as_redis, is_cluster
from .workflows.enqueue import WorkflowEnqueue

__all__ = ["Enqueuer"]

UNIQUE_TTL = 24 * 3600.0
DEFAULT_MAX_PAYLOAD = 1 << 20  # bytes of one encoded job
log = logging.getLogger("errands.enqueuer")
EnqueueItem = (
    tuple[str, Mapping[str, Any] | None] | tuple[str, Mapping[str, Any] | None, Mapping[str, Any]]
)


class Enqueuer(WorkflowEnqueue):
    """Puts jobs on queues. Cheap to keep for the life of the app; share one per process.

    >>> enqueuer = Enqueuer.from_url("redis://localhost:6379/0", namespace="myapp")
    >>> job = await enqueuer.enqueue("send_email", {"address": "a@example.com"})
    """

    def __init__(
        self,
        redis: RedisClient,
        *,
        namespace: str = "errands",
        middleware: Sequence[Any] = (),
        clock: Clock | None = None,
        serializer: Serializer | None = None,
        url: str | None = None,
        wait_replicas: int = 0,
        wait_timeout: float = 1.0,
        strict: bool | None = False,
        max_payload: int | None = DEFAULT_MAX_PAYLOAD,
    ) -> None:
        self.redis = as_redis(redis)
        self.keys = Keys(namespace)
        self._pinned: PinnedEnqueue | None = None
        # wait_replicas=N: enqueues return once N replicas have the job, see docs/deployment.md
        self.scripts = (
            ReplicatedScripts(self.redis, self.keys, wait_replicas, wait_timeout)
            if wait_replicas
            else Scripts(self.redis, self.keys)
        )
        if not wait_replicas and not is_cluster(self.redis):  # see store/pinned.py
            self._pinned = PinnedEnqueue(self.redis, self.scripts)
        watch_client(self.redis)  # a forked child's calls never use the parent's sockets
        pool = self.redis.connection_pool if self._pinned else None
        self._bulk = BulkEnqueue(self.scripts, pool)  # enqueue_many's calls
        # concurrent enqueues on one event loop share script calls (store/coalescer.py)
        self._coalescer = Coalescer(
            lambda names, rows: self.scripts.enqueue(names, rows),
            fast=self._pinned.enqueue if self._pinned else None,
        )
        self.clock: Clock = clock or SystemClock()
        self.serializer: Serializer = serializer or JSONSerializer()
        self._middleware = [as_enqueue(m) for m in middleware]
        self._where = redact_url(url) if url else describe(redis)
        self._owns_client = False
        # the typo check: True raises UnknownJobError, False warns once per name, None skips it
        self.strict = strict
        self._served: set[str] = set()  # names seen served by a running pool
        self._names: set[str] = set()  # names that passed the name check (plain_job)
        self._warned: set[str] = set()
        self._lookup: asyncio.Future[set[str]] | None = None
        if max_payload is not None and max_payload < 1:
            raise ValueError(f"max_payload must be a positive number of bytes, got {max_payload}")
        self.max_payload = max_payload  # bytes of one encoded job, None for no limit
        # one subscription for every job.result() of this enqueuer (subscribed lazily)
        self.hub = EventHub(self.redis, self.keys)

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> Enqueuer:
        """Connect lazily to ``url``; the first enqueue raises naming the URL if it is down."""
        enqueuer = cls(connect(url), url=url, **kwargs)
        enqueuer._owns_client = True
        return enqueuer

    async def aclose(self) -> None:
        await self.hub.aclose()
        if self._pinned is not None:
            await self._pinned.aclose()
        if self._owns_client:
            if not is_cluster(self.redis):  # (used on a loop closed since: its sockets closed here)
                let_go_foreign(self.redis.connection_pool)
            await self.redis.aclose()

    async def __aenter__(self) -> Enqueuer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- building jobs -----------------------------------------------------------------------
    def _build(
        self,
        name: str,
        args: Mapping[str, Any] | None,
        *,
        now: float | None = None,
        new_id: str | None = None,
        **options: Any,
    ) -> Job:
        return build_job(name, args, self.clock.now() if now is None else now, new_id, **options)

    async def _through_middleware(self, job: Job) -> Job | None:
        if not self._middleware:
            return job
        stack = self._middleware
        reached = False

        async def step(i: int) -> Any:
            nonlocal reached
            if i == len(stack):
                reached = True
                return job
            return await stack[i](job, lambda: step(i + 1))

        result = await step(0)
        # calling next() is what stores the job, even if a middleware forgets to return its value
        if isinstance(result, Job):
            return result
        return job if reached else None

    def _encode(self, job: Job) -> bytes:
        """The job's envelope, checked against ``max_payload``."""
        try:
            data = self.serializer.dumps(job.envelope())
        except SerializationError:
            dumps_json(job.args, f"the args of job {job.name!r}")  # says which arg, if it is one
            raise
        if self.max_payload is not None and len(data) > self.max_payload:
            raise PayloadTooLargeError(
                f"job {job.name!r} is {_size(len(data))} encoded, over the limit of "
                f"{_size(self.max_payload)} (Enqueuer(max_payload=...)): keep large data "
                "elsewhere (object storage, a database) and pass a reference"
            )
        return data

    def _unchecked(self, name: str) -> bool:
        """Whether the typo check has anything to do for ``name`` (a name seen served, or
        warned about when not strict, is not looked up again)."""
        if self.strict is None or name in self._served:
            return False
        return bool(self.strict) or name not in self._warned

    async def _check_served(self, names: Iterable[str]) -> None:
        """Warn once per name (or raise, ``strict=True``) when no running pool serves it."""
        unknown = {n for n in names if self._unchecked(n)}
        if not unknown:
            return
        served = await self._served_lookup()
        self._served |= served
        for name in sorted(unknown - served):
            message = unserved_message(name, served, self.keys.namespace)
            if self.strict:
                raise UnknownJobError(message)
            if name in self._warned:  # warned by another enqueue of the same burst
                continue
            self._warned.add(name)
            log.warning("%s; Enqueuer(strict=True) raises instead", message)

    async def _served_lookup(self) -> set[str]:
        """The names running pools serve; one lookup in flight at a time, shared by the burst
        of enqueues that arrives before its answer (a web app's first requests)."""
        lookup = self._lookup
        if lookup is None or lookup.done() or lookup.get_loop() is not asyncio.get_running_loop():
            lookup = self._lookup = asyncio.ensure_future(
                self._call(served_names(self.redis, self.keys, repair_hint))
            )
        return await asyncio.shield(lookup)

    def _row(self, index: int, job: Job) -> list[Any]:
        due = to_ms(job.run_at) if job.run_at is not None else 0
        return [index, job.name, job.id, self._encode(job), job.priority, due, job.partition or ""]

    async def _call(self, coro: Any) -> Any:
        try:
            return await coro
        except REDIS_ERRORS as exc:
            raise self._unavailable(exc) from exc

    def _unavailable(self, exc: BaseException) -> RedisUnavailableError:
        return RedisUnavailableError(f"cannot reach Redis at {self._where}: {exc}")

    # -- public API --------------------------------------------------------------------------
    async def enqueue(
        self,
        name: str,
        args: Mapping[str, Any] | None = None,
        *,
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        priority: int = 0,
        retry: RetryOptions | None = None,
        meta: Mapping[str, Any] | None = None,
        job_id: str | None = None,
        dedup: Dedup | None = None,
        timeout: float | timedelta | None = None,
        partition: str | None = None,
    ) -> Job | None:
        """Store a job and return it once Redis has it (None if a middleware dropped it).

        ``delay`` (seconds or timedelta) or ``at`` (datetime; naive means UTC) schedule it for
        later; ``priority`` (-1000..1000, higher first) orders it within its queue.

        ``job_id`` (default: a random id) makes the enqueue idempotent: while a job with that
        id is stored (waiting, running, dead or cancelled), and for a while after it ended
        (see docs/reliability.md), nothing is stored again and the returned Job has
        ``existed`` set. Ids follow the rules of job names. ``dedup=Dedup(key, ...)`` stores it
        only if no job of this name holds ``key``; ``job.dedup`` says what happened (docs/dedup.md).
        ``timeout`` (seconds or timedelta) bounds each run of this job, instead of its type's
        (not in a batch). ``partition``: served in turn with its type's others (docs/limits.md).
        """
        if (delay is None and at is None and retry is None and meta is None and job_id is None
                and timeout is None and type(priority) is int and not priority):  # fmt: skip
            job = plain_job(name, args, self.clock.now(), random_id(), self._names)
        else:
            job = self._build(name, args, delay=delay, at=at, priority=priority, retry=retry,
                              meta=meta, job_id=job_id, timeout=timeout)  # fmt: skip
        if partition is not None:
            job.partition = check_partition(partition)
        if dedup is not None and not isinstance(dedup, Dedup):
            raise TypeError(f"dedup must be a Dedup(key, ...), got {type(dedup).__name__}")
        drawn = job.id if job_id is None else None  # (a random id: see store_deduplicated)
        stored = await self._through_middleware(job) if self._middleware else job
        if stored is None:
            return None
        if self._unchecked(stored.name):
            await self._check_served([stored.name])
        if dedup is not None:  # (encoded here: a serializer's own error is not Redis's)
            envelope = self._encode(with_dedup(stored, dedup))
            await self._call(store_deduplicated(self.scripts, stored, envelope, dedup, drawn))
        else:
            row = self._row(1, stored)
            try:  # (not self._call: one coroutine less on the one-await path)
                existed = await self._coalescer.submit(stored.name, row)
                stored.existed = existed and stored.id != drawn
            except REDIS_ERRORS as exc:
                raise self._unavailable(exc) from exc
        stored._backend = self
        return stored

    async def enqueue_many(self, items: Iterable[EnqueueItem]) -> list[Job]:
        """Store many jobs, one atomic script call per 5,000 jobs or 16 MiB of envelopes. Items
        are ``(name, args)`` or ``(name, args, options)``, options as for :meth:`enqueue` but
        ``dedup`` (each returned Job says whether it ``existed``). A malformed item is refused,
        naming its index, and then no job of the call is stored."""
        items = list(items)
        now = self.clock.now()  # one enqueue time, and one draw of random ids, for the call
        jobs, plain, drawn = await self._built(items, now)
        envelopes = self._envelopes(jobs, plain, now)  # all encoded before the first call
        await self._check_served({j.name for j in jobs})
        for start, end in call_slices(envelopes):  # bounded work (and bytes) per script call
            chunk = columns(jobs[start:end], envelopes[start:end])
            for i in await self._call(self._bulk.enqueue(chunk)):
                jobs[start + i].existed = not drawn(start + i, jobs[start + i].id)  # (as enqueue)
        for job in jobs:
            job._backend = self
        return jobs

    async def _built(self, items: list[EnqueueItem], now: float) -> Built:
        """``build_many``'s, its jobs through the middleware (then encoded the general way)."""
        plain = type(self.serializer) is JSONSerializer
        jobs, flags, drawn = build_many(items, now, plain=plain, share=not self._middleware)
        if not self._middleware:
            return jobs, flags, drawn
        ran = [(job.id, await self._through_middleware(job)) for job in jobs]  # (id before it)
        return kept_built(ran, drawn)

    def _envelopes(self, jobs: list[Job], plain: list[bool], now: float) -> list[bytes]:
        """The jobs' envelopes, each checked against ``max_payload``."""
        fast = PlainEnvelopes(now)
        limit = self.max_payload
        out: list[bytes] = []
        for job, is_plain in zip(jobs, plain, strict=True):
            data = fast.encode(job.name, job.args) if is_plain else None
            if data is None or (limit is not None and len(data) > limit):
                data = self._encode(job)  # (says what is wrong, if anything is)
            out.append(data)
        return out

    async def result(self, job_id: str, timeout: float | None = None) -> Any:
        """Wait for a job's result (``job.result()`` calls this)."""
        return await wait_result(self.hub, job_id, timeout)

    async def enqueue_unique(
        self,
        name: str,
        args: Mapping[str, Any] | None = None,
        *,
        key: Any = None,
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        priority: int = 0,
        retry: RetryOptions | None = None,
        meta: Mapping[str, Any] | None = None,
        ttl: float = UNIQUE_TTL,
        job_id: str | None = None,
        partition: str | None = None,
    ) -> Job | None:
        """Enqueue unless a job with the same name and args (or the same ``key``) is already
        queued or scheduled; returns None then. With ``key``, the waiting job's args are
        replaced by these. The lock is released when the job starts, or ``ttl`` after it was due.
        ``job_id`` as for :meth:`enqueue`: a job id already taken stores nothing and returns
        the Job with ``existed`` set. ``partition`` as for :meth:`enqueue`. ``ttl``: a number of
        seconds > 0."""
        ttl = seconds("ttl", ttl, zero=False, most=MAX_SECONDS / 2)
        job = self._build(
            name, args, delay=delay, at=at, priority=priority, retry=retry, meta=meta, job_id=job_id
        )
        job.partition = check_partition(partition) if partition is not None else None
        job.unique = unique_digest(name, job.args if key is None else key)
        drawn = job.id if job_id is None else None  # (a random id: as in enqueue)
        stored = await self._through_middleware(job)
        if stored is None:
            return None
        encoded = self._encode(stored)
        await self._check_served([stored.name])
        for _ in range(10):
            now = self.clock.now()
            ok, holder, existed = await self._call(
                self.scripts.enqueue_unique(
                    stored.name,
                    stored.id,
                    encoded,
                    stored.priority,
                    to_ms(stored.run_at) if stored.run_at else 0,
                    stored.unique or "",
                    to_ms(max(now, stored.run_at or now) + ttl),  # counted from when it is due
                    to_ms(now),
                    stored.partition or "",
                )
            )
            if ok:
                stored.existed = existed and stored.id != drawn
                stored._backend = self
                return stored
            if key is None or await self._replace_args(holder, stored):
                return None
        # Every round was lost to a concurrent enqueue_unique of the same key that stored or
        # replaced args meanwhile: that newer call wins (last writer wins), as if ours came first.
        return None

    async def _replace_args(self, holder: str, job: Job) -> bool:
        """Give the waiting job ``holder`` the new args; False when it started meanwhile."""
        old = await self._call(self.redis.hget(self.keys.jobs, holder))
        if old is None:
            return False
        env = self.serializer.loads(old)
        env["a"] = job.args
        new = self.serializer.dumps(env)
        if new == old:
            return True
        return bool(
            await self._call(self.scripts.replace_envelope(job.unique or "", holder, old, new))
        )


def _size(n: int) -> str:
    return f"{n / 1048576:.1f} MiB" if n >= 1048576 else f"{n / 1024:.1f} KiB"
