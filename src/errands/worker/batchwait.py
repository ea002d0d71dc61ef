"""When a batch is due, the batch loop's side (moved from batching.py): the loop looks at its
queue (how many jobs wait, its head) and times ``max_wait`` from the enqueue of the oldest job
seen at the head that still waits there (see ``batch_due``, longwork/batch.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..clock import Clock
from ..longwork.batch import BatchRunner, batch_due
from ..serialization import Serializer
from ..store.scripts import Scripts

if TYPE_CHECKING:
    from ..store.keys import Keys

__all__ = ["BatchWaiting", "Seen"]


class Seen:
    """What a batch loop saw of its queue: its head, the oldest job seen there that still waits
    (each (id, enqueued at, or ``passed`` if later); ('', 0.0): none), and when a fetch last
    passed over jobs on the queue (0.0: never)."""

    def __init__(self) -> None:
        self.head: tuple[str, float] = ("", 0.0)
        self.oldest: tuple[str, float] = ("", 0.0)
        self.timed = ""  # the oldest job whose wait made the fetch due ('': the size did)
        self.passed = 0.0

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

    scripts: Scripts
    keys: Keys
    clock: Clock
    serializer: Serializer

    async def _batch_due(self, name: str, runner: BatchRunner, seen: Seen) -> float:
        """Seconds until a batch of ``name`` is due (0: now; ``batch_due``), ``max_wait`` timed
        from the enqueue of the oldest job seen at the head of the queue that still waits there:
        a job of a higher priority taking the head does not restart it. A job never seen at
        the head (overtaken before the next look) counts from the enqueue of the one seen."""
        waiting, head, kept = await self._peek(name, seen.oldest[0])
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

    async def _peek(self, name: str, oldest: str) -> tuple[int, str, bool]:
        """How many jobs wait on the queue of ``name``, the id at its head ('' if none), and
        whether job ``oldest`` waits there ('': False)."""
        async with self.scripts.redis.pipeline(transaction=False) as pipe:
            pipe.zcard(self.keys.queue(name))
            pipe.zrange(self.keys.queue(name), 0, 0)
            pipe.zscore(self.keys.queue(name), oldest)
            waiting, head, score = await pipe.execute()
        return int(waiting), head[0].decode() if head else "", bool(oldest) and score is not None

    async def _enqueued_at(self, job_id: str) -> float:
        """When the job was enqueued (its envelope's time; now when it cannot be read)."""
        raw = await self.scripts.redis.hget(self.keys.jobs, job_id)
        if isinstance(raw, str):
            raw = raw.encode()
        try:
            return float(self.serializer.loads(raw)["t"]) if raw is not None else self.clock.now()
        except Exception:
            return self.clock.now()
