"""The orphan sweep's read (worker/fetching.py): a pool's in-progress set and its hand-off list
(lua/lib/handoff.lua), in one transaction.

A job an enqueue handed to the pool is in both (one script wrote them) until the mailbox reads
it off the list. Read in two commands, the two could come from two servers during a failover
(a master demoted keeps its clients and answers reads from its data as it was, while another
connection of the same client already reaches the new master): the set read where a job was
handed since, the list where it never was, the job looked like an orphan, was requeued, and
then ran twice (started by the mailbox from the list, and again from its queue). In one
MULTI both come from one server at one instant."""

from __future__ import annotations

from typing import Any

from redis.exceptions import ResponseError

from .keys import Keys
from .topology import is_cluster

__all__ = ["in_progress_and_handoffs"]


async def in_progress_and_handoffs(
    redis: Any, keys: Keys, pool_id: str
) -> tuple[list[Any], list[Any]]:
    """The members of ``pool_id``'s in-progress set and the entries of its hand-off list, read
    at one instant on one server. An older ACL rule that refuses LRANGE gives no hand-offs
    (none are made then either); a cluster (whose replicas redirect reads) reads them apart."""
    in_progress, handoffs = keys.in_progress(pool_id), keys.handoff(pool_id)
    if not is_cluster(redis):
        try:
            async with redis.pipeline(transaction=True) as pipe:
                pipe.zrange(in_progress, 0, -1)
                pipe.lrange(handoffs, 0, -1)
                raw, listed = await pipe.execute()
            return list(raw), list(listed)
        except ResponseError:  # (the whole MULTI fails: read the set alone, as below)
            pass
    raw = await redis.zrange(in_progress, 0, -1)
    try:
        listed = await redis.lrange(handoffs, 0, -1)
    except ResponseError:  # refused by an older ACL rule: no hand-offs either
        listed = []
    return list(raw), list(listed)
