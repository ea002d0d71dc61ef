"""What a dead or cancelled job takes again when an admin action puts it back to wait
(``Client.reschedule``, ``retry_dead_job``): the enqueue_unique lock, or the Dedup key, its
start, end or cancel released (lua/move.lua takes it, or refuses the move when another live
job holds it). Pure: reads an envelope, no I/O."""

from __future__ import annotations

from typing import Any

import orjson

from ..clock import to_ms
from ..dedup.spec import check_dedup_key
from ..enqueuer import UNIQUE_TTL

__all__ = ["NO_KEY", "NO_LOCK", "key_again", "lock_again"]

NO_LOCK: tuple[str, int] = ("", 0)
NO_KEY: tuple[str, str] = ("", "")
# the Dedup modes whose key a job holds while it waits (lib/dedup.lua): until started,
# debounce, until finished (and rerun_latest); a throttle window counts enqueues, not jobs
HELD_WAITING = ("s", "d", "f", "r")


def _object(raw: bytes | None) -> dict[str, Any]:
    try:
        env = orjson.loads(raw or b"")
    except orjson.JSONDecodeError:
        return {}
    return env if isinstance(env, dict) else {}


def lock_again(raw: bytes | None, due: float, now: float) -> tuple[str, int]:
    """The digest of the lock the job of envelope ``raw`` held (its ``u``: enqueue_unique's, of
    its args or ``key=``) and the expiry of the lock taken again, ``UNIQUE_TTL`` (the default
    ``ttl``: the envelope keeps no ttl of its own) after it is due (``due``, or ``now`` when
    earlier; epoch seconds); ``NO_LOCK`` for a job of another enqueue, or an envelope that is
    no JSON object."""
    digest = _object(raw).get("u")
    if not isinstance(digest, str) or not digest:
        return NO_LOCK
    return digest, to_ms(max(due, now)) + int(UNIQUE_TTL * 1000)


def key_again(raw: bytes | None, name: str) -> tuple[str, str]:
    """The mode letter and the key as stored (``<name>:<key>``, ``Dedup.scoped``) of the Dedup
    the job of envelope ``raw`` (of job name ``name``) was enqueued with (its ``x``: the mode
    letter, then the key; dedup/enqueue.py ``with_dedup``), in a mode that holds the key while
    the job waits (not a throttle); ``NO_KEY`` for a job of another enqueue, of an errands that
    did not record it, or an envelope that is no JSON object or records no valid key."""
    held = _object(raw).get("x")
    if not isinstance(held, str) or held[:1] not in HELD_WAITING:
        return NO_KEY
    try:
        key = check_dedup_key(held[1:])
    except ValueError:
        return NO_KEY
    return held[0], f"{name}:{key}"
