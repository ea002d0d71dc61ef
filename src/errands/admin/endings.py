"""What the admin API says of a job an action finds in none of the places a job is kept.

A job whose life ended keeps, after its result record is gone (``result_ttl=0``, or expired)
or its dead or cancelled entry was trimmed, only its tombstone in ``ended`` (at least an hour,
the latest 100,000: lib/jobstate.lua); a workflow member ended while it waited (its run
cancelled, a dependency failed under the ``fail`` policy) only its outcome in its run's
record, until the run lingers out (lib/workflows.lua). ``Client.cancel`` answers from these
rather than "no such job"; ``retry_dead_job`` and ``reschedule`` raise JobChangedError for a job
they found still where it was, but changed since they read it (``unless_changed``); and
``Client.destroy(wait=...)`` waits for a running job's pool to drop it (``until_dropped``)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from ..errors import JobChangedError
from ..store.keys import Keys
from .hub import EventHub
from .workflows import member_state

__all__ = ["gone_answer", "unless_changed", "until_dropped"]


async def gone_answer(redis: Any, keys: Keys, job_id: str) -> str | None:
    """``Client.cancel``'s answer for ``job_id`` found nowhere: ``already`` for a workflow
    member its run ended as cancelled, ``ended`` for a job whose tombstone says its life
    ended (no record says how), None for an id of no job errands knows of."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hget(keys.workflow_of, job_id)
        pipe.zscore(keys.ended, job_id)
        run, tomb = await pipe.execute()
    if await member_state(redis, keys, job_id, run) == "cancelled":
        return "already"
    return "ended" if tomb is not None else None


async def unless_changed(redis: Any, moved: bool, job_id: str, source: str, done: str) -> bool:
    """``moved``, the answer of a move (lua/move.lua) made from the envelope read (its
    ``expected``): when it moved nothing and the job is still in ``source``, it changed since
    it was read (edited by ``update_job``, or run again and ended again): JobChangedError."""
    if moved or await redis.zscore(source, job_id) is None:
        return moved
    raise JobChangedError(
        f"job {job_id} changed while it was being {done} (edited, or run again by another call "
        f"and ended again): not {done}; look at it again and retry it if still wanted"
    )


async def until_dropped(hub: EventHub, job_id: str, wait: float) -> None:
    """Wait up to ``wait`` seconds (checked by the caller) for the running job ``job_id``, whose
    destroy was requested, to be dropped: its pool (or the reaper of its pool gone) ends its
    attempt, and the request goes with everything else of it (any ending: lua/settle.lua,
    ack.lua, reap.lua). Woken by the job's ``dropped`` event, looking again every 0.5 s; with
    0, one look. TimeoutError when the request still stands (the drop comes later)."""
    redis, key = hub.redis, hub.keys.cancel_requests
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    if wait > 0:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(deadline), hub.subscribe(job_id) as sub:
                while await redis.hget(key, job_id) is not None:
                    # (the deadline too: a cancel lost in redis-py's sends, see events.py)
                    if (left := deadline - loop.time()) <= 0:
                        break
                    await sub.get(timeout=min(left, 0.5))
                else:
                    sub.ended = True  # (its end was published: its mark can go, hub.py)
                    return
    if await redis.hget(key, job_id) is not None:  # (one last look: the time may be up early)
        raise TimeoutError(
            f"job {job_id} was not dropped by its pool within {wait:g}s: it still runs (a "
            "plain def handler's thread or a batch runs to its end; a pool gone, until its "
            "reaper takes its jobs back); it will be, leaving nothing"
        )
