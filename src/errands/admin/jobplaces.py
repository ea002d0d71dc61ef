"""Where ``Client.job()`` finds a job with an envelope (its name's queue, scheduled and retry
sets, the dead and cancelled sets) and what it reads beside: its last error, checkin and
checkpoint. Those three only inform: one of their hashes holding another type (a hand edit, or a
bug) leaves its value out (None) with a WARNING naming it and its repair, rather than fail the
job's read and every admin call that starts with it. A set of its places of another type is an
error naming it (the job's status is unknown)."""

from __future__ import annotations

import logging
from typing import Any

from redis.exceptions import ResponseError

from ..store.keyrepair import named_refusal
from ..store.keys import Keys

__all__ = ["read_places", "running_places"]

log = logging.getLogger("errands.admin")


async def read_places(
    redis: Any, keys: Keys, job_id: str, names: list[str]
) -> tuple[list[float | None], list[bytes | None]]:
    """The job's score in the queue, scheduled and retry sets of each of ``names`` (in that
    order), then in ``dead`` and ``cancelled``; and its error, checkin and checkpoint."""
    places = [f(n) for n in names for f in (keys.queue, keys.scheduled, keys.retry)]
    places += [keys.dead, keys.cancelled]
    extras = [keys.errors, keys.checkins, keys.checkpoints]
    async with redis.pipeline(transaction=False) as pipe:
        for key in places:
            pipe.zscore(key, job_id)
        for key in extras:
            pipe.hget(key, job_id)
        found = await pipe.execute(raise_on_error=False)
    for key, reply in zip(places, found, strict=False):
        await _refused(redis, keys, key, reply, "the job's status not read", raise_it=True)
    infos = found[len(places) :]
    for i, (key, reply) in enumerate(zip(extras, infos, strict=True)):
        if await _refused(redis, keys, key, reply, "left out of the job's information"):
            infos[i] = None
    return found[: len(places)], infos


async def running_places(
    redis: Any, keys: Keys, pools: list[str], member: str
) -> list[float | None]:
    """The start time (ms) of ``member`` ("<id>:<name>") in the in-progress set of each of
    ``pools``. One of another type only informs where the job runs: None, with a WARNING."""
    async with redis.pipeline(transaction=False) as pipe:
        for pool in pools:
            pipe.zscore(keys.in_progress(pool), member)
        found = await pipe.execute(raise_on_error=False)
    for i, pool in enumerate(pools):
        unread = "the job's pool not read from it"
        if await _refused(redis, keys, keys.in_progress(pool), found[i], unread):
            found[i] = None
    return list(found)


async def _refused(
    redis: Any, keys: Keys, key: str, reply: Any, unread: str, raise_it: bool = False
) -> bool:
    """Whether ``reply`` is an error: a WRONGTYPE is named in the scripts' words with its
    repair, raised when ``raise_it`` (other errors always), else logged as a WARNING."""
    if not isinstance(reply, ResponseError):
        return False
    if not str(reply).startswith("WRONGTYPE"):
        raise reply
    named = await named_refusal(redis, keys, key, unread)
    if raise_it:
        raise named from reply
    log.warning("%s", named)
    return True
