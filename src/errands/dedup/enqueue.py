"""Storing a job with its ``Dedup`` (``lua/enqueue_dedup.lua``) and reading what happened."""

from __future__ import annotations

from ..clock import to_ms
from ..job import DedupOutcome, Job
from ..store.scripts import Scripts
from .spec import Dedup

__all__ = ["store_deduplicated", "with_dedup"]


def with_dedup(job: Job, dedup: Dedup) -> Job:
    """``job``, its envelope to record ``dedup``'s mode letter and key (its ``x``): for as long
    as the job is stored (dead or cancelled too), so that an admin action putting it back to
    wait takes the key again (admin/relock.py ``key_again``, lua/move.lua)."""
    job._dk = dedup.mode + dedup.key
    return job


async def store_deduplicated(
    scripts: Scripts,
    job: Job,
    envelope: bytes,
    dedup: Dedup,
    drawn: str | None = None,
) -> None:
    """Store ``job`` (encoded: ``envelope``) unless its dedup key is held; sets
    ``job.dedup`` (and ``job.id`` to the id of the job that carries the request: the holder when
    dropped), or ``job.existed`` when the job id was taken. ``drawn``: the random id this
    enqueue drew (no ``job_id=``), which only this call's own first send can have stored: an
    "existed" for it is a re-send's (redis-py, after a lost reply) that found the job the first
    send stored replaced or ended since, and is answered as the first was, "enqueued" (a rerun
    it stored answers from its reply key)."""
    due = to_ms(job.run_at) if job.run_at is not None else 0
    outcome, carrier, holder = await scripts.enqueue_dedup(
        job.name,
        job.id,
        envelope,
        job.priority,
        due,
        dedup.mode,
        dedup.scoped(job.name),
        dedup.window_ms,
        job.partition or "",
    )
    if outcome == "existed" and drawn is not None and job.id == drawn:
        outcome, carrier, holder = "enqueued", job.id, job.id
    job.existed = outcome == "existed"
    if not job.existed:
        job.id = carrier
        job.dedup = DedupOutcome(outcome, dedup.key, holder)
