"""When a batch is due, the batch loop's side (moved from batching.py): the loop looks at its
queue (how many jobs wait, its head, whether its name is paused) and times ``max_wait`` from
the enqueue of the oldest job seen at the head that still waits there (see ``batch_due``,
longwork/batch.py).

A loop that is not due sleeps until a wake-up, ``poll_interval`` at most (until it is due, when
sooner). Each look first marks the pool idle for the name (its idle ZSET, lib/wake.lua: the
mark an enqueue of the name pops, publishing on the pool's channel; the Notifier then sets the
loop's event, ``batch_woken``), in the same pipeline, before it reads the queue; the loop
clears its event before the look. A job enqueued after the look was read is therefore either
seen by it or wakes the loop from its sleep: no wake-up is lost. The mark is taken away while
the loop does not wait for one (it runs a batch, the pool is quiet or stops: ``_batch_unmark``),
else an enqueue would wake this pool and not another one that waits; a mark found gone then was
popped by a wake-up meant for this pool, passed on to every idle pool."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from ..clock import Clock
from ..longwork.batch import BatchRunner, batch_due
from ..serialization import Serializer
from ..store.scripts import Scripts

if TYPE_CHECKING:
    from ..store.keys import Keys

__all__ = ["BATCH_WAKES", "BatchWaiting", "Seen"]

# The messages of the namespace's wake channel that wake the batch loops (the others, 'slot'
# of ack.lua, 'settle', 'requeue', 'move', 'enqueue' of the scripts given the name's idle
# ZSET, wake the fetch loops only: their jobs wake one pool of their name on its own channel,
# lib/wake.lua, as the enqueues and promotes do): an unpause (admin/client.py), a wake-up passed
# on (``_batch_unmark``, ``_batch_pass_on``), a reap's ('reap': its requeued jobs wake no pool
# of their name), a dedup rerun's of ack, reap or destroy ('dedup', lib/dedup.lua), a workflow
# member's whose name's idle ZSET holds another type ('workflow', lib/wfqueue.lua).
BATCH_WAKES = frozenset({"unpause", "batch", "reap", "dedup", "workflow"})


class Seen:
    """What a batch loop saw of its queue: its head, the oldest job seen there that still waits
    (each (id, enqueued at, or ``passed`` if later); ('', 0.0): none), and when a fetch last
    passed over jobs on the queue (0.0: never)."""

    def __init__(self) -> None:
        self.head: tuple[str, float] = ("", 0.0)
        self.oldest: tuple[str, float] = ("", 0.0)
        self.timed = ""  # the oldest job whose wait made the fetch due ('': the size did)
        self.passed = 0.0
        self.paused = False  # the name was paused at the last look (nothing fetched)
        self.marked = False  # the pool may be marked idle for the name (a look, a short fetch)

    def fetched(self, ids: set[str], now: float) -> None:
        """After a fetch: if it was due by the wait of a job it did not take (held back on the
        queue, e.g. by its partition's rate), it passed over every job it left (fewer than
        ``max_size`` waited): their waits count again from now, each one's as it comes to the
        head (else every later look would be due at once, each new job fetched alone; and, with
        only the timed job's counted again, each other held job coming to the head made a fetch
        due at once)."""
        if self.timed and self.timed not in ids:
            self.passed = now
            for attr in ("head", "oldest"):
                job, at = getattr(self, attr)
                if job and job not in ids:
                    setattr(self, attr, (job, max(at, now)))
        self.timed = ""


class BatchWaiting:
    """Mixin of Worker (through Batching): a batch loop's look at its queue."""

    pool_id: str
    scripts: Scripts
    keys: Keys
    clock: Clock
    serializer: Serializer
    poll_interval: float
    _batch_stop: asyncio.Event
    _batch_wakes: tuple[asyncio.Event, ...] = ()  # one a batch loop (_batch_loops)
    _batch_seen: tuple[tuple[str, Seen], ...] = ()  # each batch loop's name and Seen
    # Redis ms minus monotonic ms, and the monotonic time it was read at (_mark_deadline)
    _redis_offset: tuple[float, float] | None = None

    @property
    def idle_ms(self) -> int:
        """How long an idle mark lasts (as the fetch loop's: the pool looks again well within)."""
        return int(self.poll_interval * 2000) + 1000

    def batch_woken(self, channel: str = "", data: str = "") -> None:
        """A wake-up came (notifier.py: on ``channel``, message ``data``), or the pool goes
        quiet (no channel): the batch loops look again, but for a wake-up of the namespace's
        channel that brings no job to a batch name (``BATCH_WAKES``)."""
        if channel == self.keys.wake_channel and data not in BATCH_WAKES:
            return
        for wake in self._batch_wakes:
            wake.set()

    async def _batch_sleep(self, wake: asyncio.Event, seconds: float) -> None:
        """Until ``wake`` is set (a wake-up since the loop's last look), the pool stops, or
        ``seconds`` have passed."""
        if wake.is_set() or self._batch_stop.is_set():
            return
        waits = {asyncio.ensure_future(e.wait()) for e in (wake, self._batch_stop)}
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def _mark_deadline(self) -> int:
        """The deadline (Redis ms, as lib/wake.lua reads it) of an idle mark made now: the
        Redis clock read once a minute (the Lua ``time`` call), the monotonic clock between."""
        now = time.monotonic()
        if self._redis_offset is None or now - self._redis_offset[1] > 60.0:
            seconds, micros = await self.scripts.redis_time()
            now = time.monotonic()
            self._redis_offset = (seconds * 1000 + micros / 1000 - now * 1000, now)
        return int(now * 1000 + self._redis_offset[0]) + self.idle_ms

    async def _batch_unmark(self, name: str, seen: Seen) -> None:
        """Take the pool's idle mark of batch name ``name`` away, if it may have one (see the
        module's docstring); one found gone was popped by a wake-up sent here, which goes on to
        every idle pool (the namespace's wake channel, as an unpause)."""
        if not seen.marked:
            return
        seen.marked = False
        if await self.scripts.redis.zrem(self.keys.idle_for(name), self.pool_id) == 0:
            await self.scripts.redis.publish(self.keys.wake_channel, "batch")

    async def _batch_pass_on(self, name: str) -> None:
        """(after a full fetch) Jobs of ``name`` left on its queue while some pool is marked
        idle for it (its batch loop asleep): every idle pool is woken (the namespace's wake
        channel, "batch"). The full fetch woke one pool of the name only while one is in the
        pool-wide idle SET (lib/fetchmarks.lua's fetch_unmark), which a batch look does not join."""
        async with self.scripts.redis.pipeline(transaction=False) as pipe:
            pipe.zcard(self.keys.queue(name))
            pipe.zcard(self.keys.idle_for(name))
            queued, idle = await pipe.execute()
        if queued and idle:
            await self.scripts.redis.publish(self.keys.wake_channel, "batch")

    async def _batch_unmark_all(self) -> None:
        """(quiet) Every batch name's idle mark taken away."""
        for name, seen in self._batch_seen:
            await self._batch_unmark(name, seen)

    async def _batch_due(self, name: str, runner: BatchRunner, seen: Seen) -> float:
        """Seconds until a batch of ``name`` is due (0: now; ``batch_due``), ``max_wait`` timed
        from the enqueue of the oldest job seen at the head of the queue that still waits there:
        a job of a higher priority taking the head does not restart it. A job never seen at
        the head (overtaken before the next look) counts from the enqueue of the one seen.
        Marks the pool idle for ``name`` first; ``seen.paused`` tells whether it is paused."""
        deadline = await self._mark_deadline()
        seen.marked = True
        waiting, head, kept, seen.paused = await self._peek(name, seen.oldest[0], deadline)
        # the look's mark landed, whatever a quiet unmark did while its pipeline was under way
        # (it cleared ``marked`` and its ZREM may have come first): the loop takes it away
        seen.marked = True
        if head and head != seen.head[0]:
            at = await self._enqueued_at(head)
            seen.head = (head, max(at, seen.passed))  # (passed over by then: see Seen.fetched)
        if not head:
            seen.oldest = ("", 0.0)
        elif not kept or seen.head[1] < seen.oldest[1]:  # (it left: fetched, or cancelled)
            seen.oldest = seen.head
        waited = self.clock.now() - seen.oldest[1] if head else None
        due = batch_due(waiting, waited, runner.max_size, runner.max_wait)
        seen.timed = seen.oldest[0] if due == 0 and waiting < runner.max_size else ""
        return due

    async def _peek(self, name: str, oldest: str, deadline: int) -> tuple[int, str, bool, bool]:
        """How many jobs wait on the queue of ``name``, the id at its head ('' if none),
        whether job ``oldest`` waits there ('': False), and whether ``name`` is paused; after
        marking the pool idle for ``name`` until ``deadline`` (its commands run in order on one
        connection: the mark is there before the queue is read)."""
        idle = self.keys.idle_for(name)
        async with self.scripts.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(idle, {self.pool_id: -deadline})  # (minus: lib/wake.lua)
            pipe.zcard(self.keys.queue(name))
            pipe.zrange(self.keys.queue(name), 0, 0)
            pipe.zscore(self.keys.queue(name), oldest)
            pipe.sismember(self.keys.paused, name)
            _, waiting, head, score, paused = await pipe.execute()
        head_id = head[0].decode() if head else ""
        return int(waiting), head_id, bool(oldest) and score is not None, bool(paused)

    async def _enqueued_at(self, job_id: str) -> float:
        """When the job was enqueued (its envelope's time; now when it cannot be read)."""
        raw = await self.scripts.redis.hget(self.keys.jobs, job_id)
        if isinstance(raw, str):
            raw = raw.encode()
        try:
            return float(self.serializer.loads(raw)["t"]) if raw is not None else self.clock.now()
        except Exception:
            return self.clock.now()
