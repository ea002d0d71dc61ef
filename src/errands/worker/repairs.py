"""A pool's one line about a key a script refused a whole call for: the refusal, with the key's
type and repair (store/keyrepair.py), logged once per reason by outagelog.py's ``refused``."""

from __future__ import annotations

from typing import Any

from redis.exceptions import ResponseError

from ..outagelog import OutageLog
from ..store.keyrepair import held_key, repair_hint
from ..store.keys import Keys

__all__ = ["log_refusal"]


async def log_refusal(outage: OutageLog, exc: BaseException, redis: Any, keys: Keys) -> bool:
    """When ``exc`` is a script's refusal naming a key (lib/types.lua's error reply: sent again,
    refused again until the key is repaired), tells ``outage`` (one ERROR per reason, with its
    repair) and returns True. Any other error reply (READONLY after a failover, OOM, MISCONF,
    NOSCRIPT, a bug's) returns False: the caller logs it each time."""
    if not isinstance(exc, ResponseError) or held_key(keys, str(exc)) is None:
        return False
    outage.refused(exc, await repair_hint(redis, keys, exc))
    return True
