"""Typed wrappers around the Lua scripts in ``lua/``: one method per script.

redis-py's ``register_script`` runs EVALSHA and reloads a script after NOSCRIPT (a restarted or
``SCRIPT FLUSH``-ed server), so no script cache is kept here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from redis.asyncio import Redis

from ..limits.spec import has_rate
from .ackcall import ACK_MAX, AckReport, ack_request, ack_slices, read_ack_reply
from .adminscripts import ADMIN_SCRIPTS, AdminScripts, Arg
from .bulk import Columns, enqueue_request, job_spec
from .fetchcall import FetchCall, fetch_request, fetch_skipped
from .keys import Keys
from .luasource import lua_source
from .promotecall import Promoted, promote_request, read_promote_reply
from .reapcall import read_reap_reply, reap_request
from .records import Acked, Fetched, FetchResult, LeaseLost, Reaped, Settle, SettleRefused
from .settlecall import (
    read_settle_reply,
    settle_many_request,
    settle_request,
    settled_or_raise,
    state_keys,
)

__all__ = [
    "ACK_MAX",
    "AckReport",
    "Acked",
    "Arg",
    "FetchResult",
    "Fetched",
    "LeaseLost",
    "Reaped",
    "Scripts",
    "Settle",
    "SettleRefused",
    "lua_source",
]


class Scripts(AdminScripts):
    """The scripts bound to one client and namespace."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._s = {
            name: redis.register_script(lua_source(name))
            for name in (
                "enqueue",
                "enqueue_unique",
                "enqueue_dedup",
                "replace_envelope",
                "fetch",
                "ack",
                "settle",
                "promote",
                "heartbeat",
                "dead_pools",
                "reap",
                "unique_gc",
                "checkin",
                "trim_history",
                "trim_set",
                "deregister",
                "time",
                "limiter",
                *ADMIN_SCRIPTS,
            )
        }

    async def _call(self, name: str, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        return await self._s[name](keys=list(keys), args=list(args))

    def _state(self) -> list[str]:
        """The keys lib/jobstate.lua needs besides the common ones (settlecall.state_keys)."""
        return state_keys(self.keys)

    async def enqueue(self, names: Sequence[str], jobs: Sequence[Sequence[Arg]]) -> list[int]:
        """Store jobs; each job is (name index 1-based, name, id, envelope, priority, due ms,
        partition or ''). Returns the 0-based indices of the jobs found already there (not
        stored again)."""
        existed = await self._call("enqueue", *self.enqueue_request(names, jobs))
        return [int(i) - 1 for i in existed]

    def enqueue_request(
        self, names: Sequence[str], jobs: Sequence[Sequence[Arg]]
    ) -> tuple[list[str], list[Arg]]:
        """The KEYS and ARGV of an ``enqueue`` call (see :meth:`enqueue` and store/bulk.py)."""
        ids = [str(job[2]) for job in jobs]
        envelopes = [job[3] if isinstance(job[3], bytes) else str(job[3]).encode() for job in jobs]
        specs = [job_spec(int(j[0]), int(j[4]), int(j[5]), str(j[6])) for j in jobs]
        return enqueue_request(self.keys, names, ids, envelopes, specs)

    async def enqueue_columns(self, columns: Columns) -> list[int]:
        """As :meth:`enqueue`, the jobs given as columns (store/bulk.py)."""
        request = enqueue_request(self.keys, *columns)
        return [int(i) - 1 for i in await self._call("enqueue", *request)]

    def sha(self, name: str) -> str:
        """The SHA1 of a script's text (what EVALSHA names it by)."""
        sha: str = self._s[name].sha
        return sha

    async def enqueue_unique(
        self,
        name: str,
        id: str,
        envelope: bytes,
        priority: int,
        due_ms: int,
        digest: str,
        lock_expiry_ms: int,
        now_ms: int,
        partition: str = "",
    ) -> tuple[bool, str, bool]:
        """Returns (stored, the id of the job stored or of the holder, whether the id was
        already taken: then nothing was stored)."""
        k = self.keys
        keys = [k.jobs, k.priorities, k.seq, k.names, k.idle_for(name), k.queue(name)]
        keys += (k.scheduled(name), k.unique, k.unique_of_job, k.unique_expiry, k.listening)
        keys += (k.ended, k.done(id), k.partitions, k.partition_queue(name))
        keys += (k.partitions_ready(name), k.workflows, k.workflow_of)
        args: list[Arg] = [
            k.wake_channel,
            name,
            id,
            envelope,
            priority,
            due_ms,
            digest,
            lock_expiry_ms,
            now_ms,
            k.events_channel,
            partition,
        ]
        stored, job_id, existed = await self._call("enqueue_unique", keys, args)
        job_id = job_id.decode() if isinstance(job_id, bytes) else str(job_id)
        return bool(stored), job_id, bool(existed)

    async def enqueue_dedup(
        self,
        name: str,
        id: str,
        envelope: bytes,
        priority: int,
        due_ms: int,
        mode: str,
        key: str,
        window_ms: int,
        partition: str = "",
        call: str = "",
    ) -> tuple[str, str, str]:
        """Store a job unless its dedup ``key`` ("<name>:<key>") is held (``mode``: s d f r t,
        see lua/lib/dedup.lua; ``window_ms`` for t). Returns (outcome, id of the job carrying
        the request, id of the job holding the key): see lua/enqueue_dedup.lua. ``call``: a
        token of this call (a random one by default), by which its re-send answers as the first."""
        k = self.keys
        keys = [k.jobs, k.priorities, k.seq, k.names, k.idle_for(name), k.queue(name)]
        keys += (k.scheduled(name), k.listening, k.ended, k.done(id), k.dedup, k.dedup_of_job)
        keys += (k.dedup_window(key), k.dedup_next, k.dedup_reruns, k.partitions)
        keys += (k.partition_queue(name), k.partitions_ready(name), k.workflows, k.workflow_of)
        keys += (k.reply(call or os.urandom(8).hex()), k.partitions_waiting(name))
        args: list[Arg] = [k.wake_channel, name, id, envelope, priority, due_ms, mode, key]
        args += (window_ms, k.events_channel, partition)
        reply = await self._call("enqueue_dedup", keys, args)
        outcome, carrier, holder = (x.decode() if isinstance(x, bytes) else str(x) for x in reply)
        return outcome, carrier, holder

    async def replace_envelope(
        self, digest: str, id: str, old: bytes, new: bytes, call: str = ""
    ) -> bool:
        """``call`` as for :meth:`enqueue_dedup`; see lua/replace_envelope.lua."""
        keys = [self.keys.jobs, self.keys.unique, self.keys.reply(call or os.urandom(8).hex())]
        return bool(await self._call("replace_envelope", keys, [digest, id, old, new]))

    async def fetch(
        self,
        pool_id: str,
        now_ms: int,
        batch: int,
        queues: Sequence[tuple[str, int]],
        isolate: int = 0,
        *,
        suspects: int = 0,
        dead_timeout_ms: int = 10_000,
        specs: Mapping[str, str] | None = None,
        idle_ms: int = 3_000,
        handoffs: bool | None = None,
        beat_age_ms: int | None = None,
    ) -> FetchResult | None:
        """Move up to ``batch`` jobs from ``queues`` ((name, max_concurrency), in try order),
        within the limits ``specs`` (name -> spec of limits/spec.py); with ``isolate``, at
        most one job recovered that many times from dead pools runs here (``suspects``: how
        many such jobs the pool runs now). Returns None when the pool's lease has expired (no
        heartbeat for ``dead_timeout_ms``: nothing fetched); raises :class:`LeaseLost` when
        the pool is no longer registered. A pool that got fewer jobs than asked for is marked
        idle for ``idle_ms`` (lib/wake.lua): it must fetch again within that while idle;
        ``handoffs``: for hand-offs of its names without limits too (lib/handoff.lua), while
        its last heartbeat is at most ``beat_age_ms`` old (default: the dead timeout); False:
        none (a pool's fetch loop: its arming key taken), None: left alone (a batch fetch). A
        name whose ``running`` count is not a counter is skipped (``FetchResult.skipped``), as
        is one of whose own keys holds another type (``.skipped_keys``); a partition whose
        running count is not one is passed over (``.skipped_parts``)."""
        specs = specs or {}
        call = FetchCall(pool_id, now_ms, batch, queues, isolate, suspects, dead_timeout_ms, specs,
                         idle_ms, handoffs, beat_age_ms)  # fmt: skip
        flat = await self._fetch_call(call)
        status = int(flat[0])
        if status == -1:
            raise LeaseLost(f"pool {pool_id} is no longer registered")
        if status == -2:
            return None
        token = flat[1].decode() if isinstance(flat[1], bytes) else str(flat[1])
        wait, counted = int(flat[2]), int(flat[3])
        left = fetch_skipped(flat)  # (where the jobs end, then what it left alone and why)
        end = left[0]
        # the spec of each queue when it has a rate: a give-back uncounts the start (settle)
        rated = [s if has_rate(s) else "" for s in (specs.get(n, "") for n, _ in queues)]
        return FetchResult(
            wait / 1000 if wait >= 0 else None,
            [
                Fetched(
                    (queue := int(flat[i])),
                    flat[i + 1].decode(),
                    flat[i + 2],
                    token,
                    float(flat[i + 3]),
                    bool(int(flat[i + 4])),
                    counted,
                    rated[queue - 1],
                )
                for i in range(4, end, 5)
            ],
            *left[1:],
        )

    async def _fetch_call(self, call: FetchCall) -> Any:
        """The reply of a fetch.lua call (store/hotcalls.py sends it packed on a held
        connection)."""
        return await self._call("fetch", *fetch_request(self.keys, call))

    async def _ack_call(
        self, pool_id: str, done: Sequence[Acked], wake: bool, now_ms: int, history: bool
    ) -> Any:
        """The reply of an ack.lua call of at most ACK_MAX jobs (as ``_fetch_call``)."""
        return await self._call(
            "ack", *ack_request(self.keys, pool_id, done, wake, now_ms, history)
        )

    async def ack(
        self, pool_id: str, done: Sequence[Acked], wake: bool, now_ms: int, history: bool
    ) -> list[str]:
        """Acknowledge finished jobs; returns the ids refused by the fence (their attempt was
        no longer this pool's: the job runs again, or ran, elsewhere). See :meth:`ack_report`,
        which also says which jobs were left alone as unfit."""
        return (await self.ack_report(pool_id, done, wake, now_ms, history)).refused

    async def ack_report(
        self, pool_id: str, done: Sequence[Acked], wake: bool, now_ms: int, history: bool
    ) -> AckReport:
        """Acknowledge finished jobs; returns those refused by the fence and those left alone
        as unfit (:class:`AckReport`). At most ``ACK_MAX`` jobs (ack.lua refuses more) and 16 MiB
        of results (ackcall.py ack_slices) go in one script call: more in several, in turn (each
        idempotent on re-send: a call that fails is re-sent whole by the caller)."""
        report = AckReport()
        for start, end in ack_slices(done):  # (ACK_MAX jobs, ACK_CALL_BYTES of results)
            chunk = done if end - start == len(done) else done[start:end]
            read_ack_reply(await self._ack_call(pool_id, chunk, wake, now_ms, history), report)
        return report

    async def settle(self, pool_id: str, s: Settle) -> bool:
        """Retry, bury, drop, cancel or requeue one job: whether it was settled (False: this
        attempt does not hold it any more). Raises :class:`SettleRefused` when settle.lua
        refused it (nothing written)."""
        return settled_or_raise(await self.settle_report(pool_id, [s]))[0]

    async def settle_many(self, pool_id: str, settles: Sequence[Settle]) -> list[bool]:
        """Settle several jobs in one script call (the failed jobs of a batch); each is fenced
        on its own attempt. Returns whether each was settled; raises the first
        :class:`SettleRefused` when settle.lua refused one (the others of the call settled)."""
        return settled_or_raise(await self.settle_report(pool_id, settles))

    async def settle_report(
        self, pool_id: str, settles: Sequence[Settle]
    ) -> list[bool | SettleRefused]:
        """Settle jobs in one script call (one job: a plain call; several: ``{many}``). Each
        job's outcome, in order: True settled (or by this very call, re-sent), False not this
        attempt's any more, or a :class:`SettleRefused`: settle.lua's reply for a job it
        refused before writing anything of it (sent again, refused again until repaired)."""
        if not settles:
            return []
        if len(settles) == 1:
            keys, args = settle_request(self.keys, pool_id, settles[0])
        else:
            keys, args = settle_many_request(self.keys, pool_id, settles)
        return read_settle_reply(await self._call("settle", keys, args), len(settles))

    async def promote(self, names: Sequence[str], now_ms: int, limit: int) -> tuple[int, int]:
        """Move due scheduled and retry jobs to their queues; returns (moved, earliest due)."""
        return (done := await self.promote_report(names, now_ms, limit)).moved, done.earliest

    async def promote_report(self, names: Sequence[str], now_ms: int, limit: int) -> Promoted:
        """promote, with the job names left alone (a key of theirs of another type)."""
        keys, args = promote_request(self.keys, names, now_ms, limit)
        return read_promote_reply(await self._call("promote", keys, args), names)

    async def checkin(self, id: str, name: str, data: bytes, attempt: str) -> bool:
        """Record progress; ``attempt`` is "<pool id>:<token>". False when it is not this
        attempt's job any more."""
        k = self.keys
        keys = [k.checkins, k.jobs, k.listening, k.attempts]
        args: list[Arg] = [id, name, data, k.events_channel, attempt]
        return bool(await self._call("checkin", keys, args))

    async def trim_history(self, names: Sequence[str], members: Sequence[str]) -> int:
        """Drop these attempt records (``worker.requeuer.trim_history`` picks the oldest)."""
        k = self.keys
        keys = [k.history, k.history_data, *(k.done(m.rsplit(":", 1)[0]) for m in members)]
        keys += (k.history_of(n) for n in names)
        return int(await self._call("trim_history", keys, [len(members), *members]))

    async def trim_set(self, key: str, older_than_ms: int, keep: int) -> int:
        """Bound a set of ended jobs (dead, cancelled), forgetting the trimmed jobs (at most
        1,000 by age and 1,000 by size per call)."""
        k = self.keys
        keys = [key, k.jobs, k.priorities, k.errors, k.recoveries, k.checkins]
        keys += (k.cancel_requests, *self._state(), k.listening, k.partitions, k.workflow_of)
        args: list[Arg] = [older_than_ms, keep, k.events_channel]
        return int(await self._call("trim_set", keys, args))

    async def unique_gc(self, now_ms: int, limit: int = 1000) -> int:
        k = self.keys
        keys = [k.unique, k.unique_of_job, k.unique_expiry]
        return int(await self._call("unique_gc", keys, [now_ms, limit]))

    async def heartbeat(self, pool_id: str, info: bytes, ttl_ms: int, mode: str = "renew") -> int:
        """Register (``mode="register"``) or renew a pool's lease; returns the Redis time in
        ms, or -1 when the lease is lost."""
        keys = [self.keys.pools, self.keys.pool_info(pool_id), self.keys.retired]
        return int(await self._call("heartbeat", keys, [pool_id, info, ttl_ms, mode]))

    async def limiter(self, name: str, rates: Sequence[tuple[int, int]]) -> float:
        """Take one start of limiter ``name`` ((limit, per ms) rates): 0.0 when taken, else the
        seconds until its rates let one start."""
        args: list[Arg] = [x for rate in rates for x in rate]
        return int(await self._call("limiter", [self.keys.limiter(name)], args)) / 1000

    async def redis_time(self) -> tuple[int, int]:
        """The Redis clock (seconds, microseconds), on the namespace's node."""
        seconds, micros = await self._call("time", [self.keys.pools], [])
        return int(seconds), int(micros)

    async def deregister(self, pool_id: str, names: Sequence[str] = ()) -> bool:
        """Give up the lease of a pool that holds no job any more (serving ``names``). True
        when this call deregistered it: a re-send of a call that did says False (see
        lua/deregister.lua; no caller acts on it)."""
        k = self.keys
        keys = [k.pools, k.in_progress(pool_id), k.pool_info(pool_id), k.idle, k.handoff(pool_id)]
        keys += (k.quiet_requests, *(k.idle_for(name) for name in names))
        return bool(await self._call("deregister", keys, [pool_id]))

    async def dead_pools(self, dead_after_ms: int, limit: int = 100) -> list[str]:
        """Pools to reap: registered ones past the dead timeout, and retired ones."""
        keys = [self.keys.pools, self.keys.retired]
        ids = await self._call("dead_pools", keys, [dead_after_ms, limit])
        return [i.decode() for i in ids]

    async def reap(
        self,
        pool_id: str,
        dead_after_ms: int,
        max_recoveries: int,
        error: bytes,
        malformed: bytes,
        members: Sequence[tuple[bytes | str, str, str]],
        history: bool = True,
        dedup_names: Mapping[str, str] | None = None,
        *,
        read_to_end: bool = False,
        left_before: int = 0,
    ) -> Reaped:
        """Take a dead pool's lease and jobs, given as (member, id, name; name "" for a
        malformed entry, whose job is buried with ``malformed``); see store/reapcall.py.
        Raises ``ReapRefused`` when reap.lua refused the call (nothing written).
        ``read_to_end``: ``members`` end the caller's read of the set, whose earlier calls
        left ``left_before`` entries alone (not by default: the pool is not held, listed
        again next pass)."""
        numbers, errors = (dead_after_ms, max_recoveries), (error, malformed)
        head = (self.keys, pool_id, numbers, errors, members, history, dedup_names or {})
        request = reap_request(*head, read_to_end=read_to_end, left_before=left_before)
        return read_reap_reply(await self._call("reap", *request))
