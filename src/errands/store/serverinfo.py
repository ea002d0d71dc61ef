"""The server's eviction policy, read once at a pool's start: any but ``noeviction`` lets Redis
delete errands' keys on its own under memory pressure (docs/reliability.md, "No eviction")."""

from __future__ import annotations

import logging
from typing import Any

from redis.exceptions import ResponseError

from .topology import on_node_of

__all__ = ["SAFE_POLICY", "evicts", "read_policy", "warn_if_evicting"]

log = logging.getLogger("errands.pool")

SAFE_POLICY = "noeviction"
_WHERE = "docs/reliability.md#what-redis-must-provide"
_WHAT = {  # what a policy's family evicts (an unknown one: as allkeys)
    "allkeys": "any of errands' keys (jobs, queues, locks, tombstones, results)",
    "volatile": "errands' keys with a TTL (result records, dedup windows, the replies kept "
    "for re-sent calls, pool registrations)",
}


def evicts(policy: str | None) -> bool:
    """Whether a server of ``policy`` may delete keys on its own (``None``: not known)."""
    return policy is not None and policy != SAFE_POLICY


async def read_policy(redis: Any, key: str) -> str | None:
    """The ``maxmemory_policy`` of ``INFO memory`` (INFO answers where CONFIG GET is disabled,
    on managed servers), on a cluster from the node holding ``key``; ``None`` when INFO is
    refused (an ACL user without ``+info``, a server that renamed it) or does not report it."""
    try:
        info = await redis.info("memory", **on_node_of(redis, key))
    except ResponseError as exc:  # (NoPermissionError included)
        log.debug("the eviction policy is not checked: INFO refused (%s)", exc)
        return None
    policy = info.get("maxmemory_policy") if isinstance(info, dict) else None
    if not isinstance(policy, str):
        log.debug("the eviction policy is not checked: INFO does not report maxmemory_policy")
        return None
    return policy


async def warn_if_evicting(redis: Any, key: str, pool_id: str) -> str | None:
    """(a pool's start) Read the policy; log one warning when it evicts. Returns it."""
    policy = await read_policy(redis, key)
    if policy is not None and evicts(policy):
        log.warning(
            "pool %s: Redis maxmemory-policy is %r: under memory pressure Redis deletes %s: "
            "jobs are lost or run twice. Set maxmemory-policy %s (see %s)",
            pool_id,
            policy,
            _WHAT.get(policy.partition("-")[0], _WHAT["allkeys"]),
            SAFE_POLICY,
            _WHERE,
        )
    return policy
