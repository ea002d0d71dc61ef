"""The repair of a key a script refused a whole call for (lib/types.lua: ``WRONGTYPE <key> holds
another type: ...`` or ``errands: <key> holds <value>, not a counter: ...``): which key of the
namespace a refusal names, its type as Redis reports it now, and what to do with it, for the one
line a pool logs about it (worker/repairs.py) and the error an enqueue raises (served.py). The
namespace-wide keys every call of a kind needs are named: ``seq`` (the queues' order and the
partitions' turns count on from it) and ``stats`` (statistics only)."""

from __future__ import annotations

import re
from collections.abc import Awaitable
from typing import Any, TypeVar

from redis.exceptions import ResponseError

from .keys import Keys

__all__ = [
    "held_key",
    "named_read",
    "named_refusal",
    "own_key_repair",
    "repair_hint",
    "repair_hint_sync",
    "run_key_repair",
]

T = TypeVar("T")


def held_key(keys: Keys, message: str) -> str | None:
    """The key of ``keys``' namespace a refusal's ``message`` names, or None: from its prefix
    to the first " holds " after it (a namespace may hold spaces, and " holds ": store/keys.py;
    a key read as one token was the part after its last space)."""
    prefix = "(?:WRONGTYPE |errands: )(" + re.escape(keys.prefix)
    found = re.search(prefix + ".*?) holds ", message)  # (re caches the compiled pattern)
    return found.group(1) if found else None


async def repair_hint(redis: Any, keys: Keys, exc: BaseException) -> str:
    """``" (<key> is a <type>; repair: ...)"``, or "" when ``exc`` names no key. One TYPE of
    the key; never raises (a failed read leaves its type out)."""
    key = held_key(keys, str(exc))
    if key is None:
        return ""
    try:
        kind = await redis.type(key)
    except Exception:  # (the line goes out without it)
        kind = None
    return _hint(keys, key, kind)


async def named_read(redis: Any, keys: Keys, key: str, read: Awaitable[T], unread: str) -> T:
    """``read``'s reply (a plain read of ``key``). Where ``key`` holds another type, Redis' own
    WRONGTYPE (which names no key) is raised in the scripts' words (lib/types.lua: ``WRONGTYPE
    <key> holds another type: <unread>``) followed by its repair_hint; other errors as they are."""
    try:
        return await read
    except ResponseError as exc:
        if not str(exc).startswith("WRONGTYPE"):
            raise
        raise await named_refusal(redis, keys, key, unread) from exc


async def named_refusal(redis: Any, keys: Keys, key: str, unread: str) -> ResponseError:
    """Redis' WRONGTYPE of a plain read of ``key`` in the scripts' words (lib/types.lua:
    ``WRONGTYPE <key> holds another type: <unread>``), followed by its repair_hint."""
    refusal = ResponseError(f"WRONGTYPE {key} holds another type: {unread}")
    return ResponseError(f"{refusal}{await repair_hint(redis, keys, refusal)}")


def own_key_repair(key: str) -> str:
    """The repair of a job name's own key of another type (its queue, history, a key of its
    partitions: what the scripts leave that name alone for), for the lines that name it."""
    return f"keep a copy (RENAME {key} <elsewhere>), or DEL {key}"


def run_key_repair(key: str) -> str:
    """The repair of a workflow run's own key of another type (``wf:<run>`` or one of its parts:
    what wf_cascade.lua holds that run's walks for). Its value is the run's state: it is put
    back, not dropped (a DEL leaves the run unfinished for good: its waiting members are never
    released nor ended)."""
    return (
        f"restore the run's value of {key} (RENAME <copy> {key} if a copy of it was kept, or "
        f"from a backup); do not DEL {key}: that loses the run's state, and the run is left "
        "unfinished for good"
    )


def repair_hint_sync(client: Any, keys: Keys, exc: BaseException) -> str:
    """repair_hint, with a synchronous client (the heartbeat thread's)."""
    key = held_key(keys, str(exc))
    if key is None:
        return ""
    try:
        kind = client.type(key)
    except Exception:  # (the line goes out without it)
        kind = None
    return _hint(keys, key, kind)


def _hint(keys: Keys, key: str, kind: Any) -> str:
    """repair_hint's words for ``key``, of type ``kind`` (TYPE's reply; None: unread)."""
    if kind is None:
        kind = "key of unknown type"
    kind = kind.decode() if isinstance(kind, bytes) else str(kind)
    if key == keys.stats:
        what = (
            f"DEL {key} (statistics only: processed, failed, ... count again from 0; a field "
            "that is not a number is replaced by the next count)"
        )
    elif key == keys.seq:
        what = (
            f"SET {key} <n>, <n> a whole number at least what it held (the queues' order and "
            f"the partitions' turns count on from it); DEL {key} counts again from 0 (jobs "
            "enqueued from then on go ahead of those queued before)"
        )
    elif key in (keys.pools, keys.retired):
        what = (
            f"DEL {key} (the pools' registry: no pool is reaped, and none registers, while it "
            "holds another type); the pools running then lose their leases and carry on under "
            "new ids, and the jobs left in their in-progress sets, and in those of retired pools "
            "not drained yet, go back to their queues when `await pool.reaper.sweep()` is run "
            "once (docs/reliability.md)"
        )
    elif key == keys.quiet_requests:
        what = (
            f"DEL {key} (the pools' remote quiet/resume requests: none is read while it holds "
            "another type; send again those that were pending)"
        )
    else:
        what = f"see docs/data-layout.md for what {key} holds, and DEL or rewrite it"
    return f" ({key} is a {kind}; repair: {what})"
