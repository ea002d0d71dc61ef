"""The enqueue_unique lock a dead or cancelled job takes again when an admin action puts it back
to wait (``Client.reschedule``, ``retry_dead_job``; lua/move.lua takes it, or refuses the move
when another live job holds it). Pure: reads an envelope, no I/O."""

from __future__ import annotations

import orjson

from ..clock import to_ms
from ..enqueuer import UNIQUE_TTL

__all__ = ["NO_LOCK", "lock_again"]

NO_LOCK: tuple[str, int] = ("", 0)


def lock_again(raw: bytes | None, due: float, now: float) -> tuple[str, int]:
    """The digest of the lock the job of envelope ``raw`` held (its ``u``: enqueue_unique's, of
    its args or ``key=``) and the expiry of the lock taken again, ``UNIQUE_TTL`` (the default
    ``ttl``: the envelope keeps no ttl of its own) after it is due (``due``, or ``now`` when
    earlier; epoch seconds); ``NO_LOCK`` for a job of another enqueue, or an envelope that is
    no JSON object."""
    try:
        env = orjson.loads(raw or b"")
    except orjson.JSONDecodeError:
        return NO_LOCK
    digest = env.get("u") if isinstance(env, dict) else None
    if not isinstance(digest, str) or not digest:
        return NO_LOCK
    return digest, to_ms(max(due, now)) + int(UNIQUE_TTL * 1000)
