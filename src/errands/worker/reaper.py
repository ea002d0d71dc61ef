"""The reaper: takes the lease of dead pools and gives their jobs back to their queues, once.

Every pool runs one. A pool is dead when its last heartbeat (Redis clock) is older than
``dead_timeout``: the reaper retires it (it can never fetch, ack or check in again under that
id) and drains its in-progress set, a few hundred jobs per script call, until it is empty. A
reaper only reaps while its own pool has itself been beating steadily for at least
``dead_timeout``: after a Redis stall or outage every heartbeat looks old, and waiting one
timeout lets the live pools beat again first. ``sweep()`` (run by hand, once, after upgrading
from errands 0.x, see docs/reliability.md) also drains in-progress sets whose pool is in no
registry, which older versions could leave behind.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

import orjson
from redis.exceptions import ResponseError

from ..clock import Clock
from ..outagelog import OutageLog
from ..store.connection import REDIS_ERRORS
from ..store.keys import check_job_name
from ..store.records import Reaped, ReapRefused
from ..store.scripts import Scripts
from .lease import Lease
from .namekeys import KeysLeft
from .reapleft import LeftAlone, Refused
from .repairs import log_refusal

__all__ = ["Reaper"]

log = logging.getLogger("errands.reaper")
# dropping idle marks: Redis errors, JSON not well formed
_FORGIVEN: tuple[type[BaseException], ...] = (*REDIS_ERRORS, ValueError)
BATCH = 500  # in-progress entries per reap call


class Reaper:
    def __init__(
        self,
        scripts: Scripts,
        clock: Clock,
        own_pool_id: str,
        lease: Lease | None,
        dead_timeout: float,
        interval: float,
        max_recoveries: int,
        history: bool = True,
    ) -> None:
        self.scripts = scripts
        self.clock = clock
        self.own_pool_id = own_pool_id
        self.lease = lease
        self.dead_timeout_ms = int(dead_timeout * 1000)
        self.dead_timeout = dead_timeout
        self.interval = interval
        self.max_recoveries = max_recoveries
        self.history = history  # record the jobs it buries or cancels in the attempt history
        self.requeued = 0
        self.buried = 0
        # job name -> (its `running` count's value, the pools whose entries of it wait): names
        # a pass left alone, and the same per partition of a job name whose running count is
        # not a counter; _left_alone and _parts_left_alone log them, once while they stay so
        self._unfit: dict[str, tuple[str, set[str]]] = {}
        self._unfit_parts: dict[tuple[str, str], tuple[str, set[str]]] = {}
        self._left_alone = LeftAlone[str](self._name_where)
        self._parts_left_alone = LeftAlone[tuple[str, str]](self._part_where)
        # job name -> (its key of another type, the pools whose entries of it wait): a pass's
        # names left alone for a key of theirs (reap.lua), logged once each while so
        self._keyed: dict[str, tuple[str, set[str]]] = {}
        self._key_left = KeysLeft(scripts, log, "reaper", "its dead pools' jobs are not reaped")
        self._refused = Refused()  # the dead pools reap.lua refuses (logged once)
        self._unread = False  # _no_longer_dead's read refused (logged once while it is)

    async def run(self) -> None:
        outage = OutageLog(log, "reaper (takes the jobs of dead pools back)")
        while True:
            await asyncio.sleep(self.interval * (0.75 + random.random() / 2))
            try:
                asked = self._trusted()  # (untrusted, reap_once asks Redis nothing)
                await self.reap_once()
                if asked:
                    outage.ok()
            except REDIS_ERRORS as exc:
                outage.failed(exc)
            except Exception as exc:  # the reaper must never die: it is how crashed pools come back
                if not await log_refusal(outage, exc, self.scripts.redis, self.scripts.keys):
                    log.exception("reaper pass failed")

    def _trusted(self) -> bool:
        lease = self.lease
        return lease is None or lease.healthy_for() >= self.dead_timeout

    async def reap_once(self) -> int:
        """Reap every dead pool now; returns how many jobs were given back or buried (0 when
        this pool's own heartbeats are not steady enough to judge others)."""
        if not self._trusted():
            return 0
        asked = time.monotonic()
        dead = await self.scripts.dead_pools(self.dead_timeout_ms)
        # If Redis stalled (DEBUG SLEEP, SIGSTOP, a long script) while the question waited, it
        # was answered with the clock jumped ahead and the beats of the live pools still queued
        # behind it: every pool looks dead. Trust only a prompt answer.
        lease = self.lease
        slow = lease is not None and (time.monotonic() - asked > lease.interval)
        if dead and (slow or not self._trusted()):
            log.info("reaper: Redis answered slowly; not reaping this time")
            return 0
        moved = 0
        self._unfit, self._unfit_parts, self._keyed = {}, {}, {}
        refused: dict[str, str] = {}  # pool id -> the reason of its refusal, this pass
        visited: list[str] = []  # the pools this pass reaped or was refused
        for pool_id in dict.fromkeys(dead):
            if pool_id != self.own_pool_id:
                visited.append(pool_id)
                try:
                    moved += await self.reap_pool(pool_id)
                except ReapRefused as exc:
                    # reap.lua's own refusals (a key of another type, a count that is not a
                    # counter: lib/types.lua) write nothing: the other dead pools are reaped all
                    # the same, this one once the key is repaired; any other error (Redis
                    # itself: READONLY, OOM, ...) ends the pass
                    refused[pool_id] = str(exc)
                    await self._refused.hint(pool_id, exc, self.scripts)
        visited += await self._no_longer_dead([p for p in self._refused.names if p not in dead])
        self._refused.note(visited, refused)  # (once while a reason lasts)
        await self._log_unfit()
        return moved

    async def _no_longer_dead(self, pools: list[str]) -> list[str]:
        """Those of ``pools`` (refused before, not listed this pass) that are no dead pool now:
        neither retired nor registered with a beat older than the dead timeout (gone: reaped by
        another reaper; or alive). A retired one not listed is held (reap.lua set its score
        ahead), or after the first 100 (dead_pools.lua): not judged until it is listed again.
        A read for the log only: on a Redis error none is judged this pass, which goes on; a
        refusal (WRONGTYPE: `pools` or `retired` of another type) is logged once while it lasts."""
        if not pools:
            return []
        keys = self.scripts.keys
        try:
            async with self.scripts.redis.pipeline(transaction=False) as pipe:
                pipe.time()
                for pool_id in pools:
                    pipe.zscore(keys.retired, pool_id)
                    pipe.zscore(keys.pools, pool_id)
                (seconds, micros), *scores = await pipe.execute()
        except REDIS_ERRORS as exc:
            log.debug("reaper: reading whether refused pools are still dead failed (%r)", exc)
            return []
        except ResponseError as exc:  # (raised the pass's end: its refusals went unlogged)
            if not self._unread:  # (redis-py's message names the command and key)
                log.error(
                    "reaper: refused pools not judged until repaired (docs/data-layout.md): %s", exc
                )
            self._unread = True
            return []
        self._unread = False
        since = seconds * 1000 + micros // 1000 - self.dead_timeout_ms
        return [
            pool_id
            for pool_id, retired, beat in zip(pools, scores[::2], scores[1::2], strict=True)
            if retired is None and (beat is None or beat >= since)
        ]

    async def _log_unfit(self) -> None:
        """One error per job name, and per partition of one, whose in-progress entries a pass
        left alone (its running count is not a counter), while it stays so; a line once its
        count is one again (read here: a pass does not visit every held pool, reap.lua lists one
        again one dead timeout after the reap that left its entries alone)."""
        await self._left_alone.note_pass(self.scripts.redis, self._unfit)
        await self._parts_left_alone.note_pass(self.scripts.redis, self._unfit_parts)
        await self._key_left.note(
            {name: key for name, (key, _) in self._keyed.items()},
            {name: "dead pools " + ", ".join(sorted(p)) for name, (_, p) in self._keyed.items()},
        )

    def _name_where(self, name: str) -> tuple[str, str, str, str]:
        """Job name ``name``, as _LeftAlone's ``where`` says it."""
        return f"job name {name}", name, self.scripts.keys.running, name

    def _part_where(self, key: tuple[str, str]) -> tuple[str, str, str, str]:
        """Partition ``part`` of job name ``name`` (``key``), as _LeftAlone's ``where`` says it."""
        name, part = key
        running = self.scripts.keys.partitions_running(name)
        return f"partition {part!r} of job name {name}", name, running, part

    async def sweep(self) -> int:
        """Drain the in-progress sets of pools found neither registered nor retired (an older
        version left them). Walks the keyspace once with SCAN (which an ACL user confined to
        its namespace usually may not run); returns the jobs moved."""
        keys = self.scripts.keys
        prefix = keys.in_progress("x")[:-1]
        redis = self.scripts.redis
        moved = 0
        pattern = "".join("\\" + c if c in "*?[]\\" else c for c in prefix) + "*"
        async for key in redis.scan_iter(match=pattern, count=1000):
            pool_id = (key.decode() if isinstance(key, bytes) else str(key))[len(prefix) :]
            if pool_id == self.own_pool_id or not pool_id:
                continue
            registered = await redis.zscore(keys.pools, pool_id)
            if registered is None and await redis.zscore(keys.retired, pool_id) is None:
                log.warning("reaper: in-progress set of unknown pool %s found", pool_id)
                moved += await self.reap_pool(pool_id)
        return moved

    async def reap_pool(self, pool_id: str) -> int:
        key = self.scripts.keys.in_progress(pool_id)
        now = self.clock.now()
        error = orjson.dumps(
            {
                "error": f"worker died while running this job {self.max_recoveries} times",
                "at": now,
                "attempt": 0,
            }
        )
        malformed = orjson.dumps(
            {"error": "malformed in-progress entry (not <job id>:<job name>)", "at": now}
        )
        moved = 0
        left = 0  # entries left alone at the head of the set (reap.lua: their name's count)
        while True:
            raw: list[Any] = await self.scripts.redis.zrange(key, left, left + BATCH - 1)
            members: list[tuple[bytes | str, str, str]] = []
            for m in raw:
                try:
                    member = m.decode()
                    job_id, _, name = member.partition(":")
                    check_job_name(name)
                    if not job_id:
                        raise ValueError("no job id")
                except ValueError as exc:  # UnicodeDecodeError included
                    log.error("reaper: malformed in-progress entry %r (%s)", m[:200], exc)
                    members.append((m, m.partition(b":")[0].decode(errors="replace"), ""))
                    continue
                members.append((member, job_id, name))
            done = await self.scripts.reap(
                pool_id,
                self.dead_timeout_ms,
                self.max_recoveries,
                error,
                malformed,
                members,
                self.history,
                await self._dedup_names([id for _, id, name in members if not name]),
                read_to_end=len(raw) < BATCH,  # (a short read is the set's end)
                left_before=left,  # (the entries this read's earlier calls left alone)
            )
            if done.alive:
                return moved
            moved += done.requeued + done.buried + done.cancelled
            self.requeued += done.requeued
            self.buried += done.buried
            self._log_reaped(pool_id, done)
            if done.unfit:  # (the next call reads the members after them: each call moves on)
                left += sum(1 for _, _, name in members if name in done.unfit)
                for name, value in done.unfit.items():
                    self._unfit.setdefault(name, (value, set()))[1].add(pool_id)
            left += done.held + done.key_held  # (for their partition's count, a key's type)
            for name, bad in done.key_unfit.items():
                self._keyed.setdefault(name, (bad, set()))[1].add(pool_id)
            for part, value in done.unfit_parts.items():
                self._unfit_parts.setdefault(part, (value, set()))[1].add(pool_id)
            if done.drained or len(raw) < BATCH:  # (the set read to its end: the rest is left)
                await self._drop_idle_marks(pool_id)
                return moved

    def _log_reaped(self, pool_id: str, done: Reaped) -> None:
        """What one reap call of ``pool_id`` did, and the stats fields it replaced (reap.lua
        replaces a ``dead`` or ``cancelled`` that is not a counter with its count)."""
        if done.replaced:
            log.warning(
                "reaper: %s field %s was not a counter: replaced by the count of pool %s's "
                "reap (its old value is lost)",
                self.scripts.keys.stats,
                " and ".join(done.replaced),
                pool_id,
            )
        if done.requeued or done.buried or done.cancelled:
            log.warning(
                "reaped pool %s: %d jobs requeued, %d buried as poison, %d cancelled",
                pool_id,
                done.requeued,
                done.buried,
                done.cancelled,
            )

    async def _dedup_names(self, ids: list[str]) -> dict[str, str]:
        """Job id of a malformed entry -> the job name of the dedup key its job holds (its
        dedup_of_job entry: mode letter, "<job name>:<key>"), for a rerun waiting for that
        key, which reap.lua queues there when it buries the job (no name of its entry tells)."""
        if not ids:
            return {}
        try:
            held = await self.scripts.redis.hmget(self.scripts.keys.dedup_of_job, ids)
        except ResponseError:  # (a key of another type: reap.lua refuses, naming it)
            return {}
        names: dict[str, str] = {}
        for id, v in zip(ids, held, strict=True):
            text = v.decode(errors="replace") if isinstance(v, bytes) else str(v or "")
            name, sep, _ = text[1:].partition(":")
            if sep and _valid_name(name):  # (as reap.lua reads it: "<name>:<key>")
                names[id] = name
        return names

    async def _drop_idle_marks(self, pool_id: str) -> None:
        """The reaped pool's idle marks (lib/wake.lua) go: a wake-up sent to it would be lost
        until they expire. Its names are those it published (store/served.py); best effort."""
        try:
            raw = await self.scripts.redis.get(self.scripts.keys.serves(pool_id))
            names = orjson.loads(raw) if raw is not None else []
            if isinstance(names, list):
                valid = [n for n in names if isinstance(n, str) and _valid_name(n)]
                await self.scripts.deregister(pool_id, valid)
        except _FORGIVEN as exc:
            log.debug("reaper: the idle marks of pool %s stay until they expire (%r)", pool_id, exc)


def _valid_name(name: str) -> bool:
    try:
        check_job_name(name)
    except ValueError:
        return False
    return True
