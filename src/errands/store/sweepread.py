"""The orphan sweep's read (worker/orphans.py): a pool's in-progress set, then the attempt
records of its jobs and its hand-off list (lua/lib/handoff.lua), these two in one transaction.

The sweep requeues an orphan fenced by the attempt read here (settle.lua, token '*<attempt>'):
a job fetched again since (by a batch loop beside the sweep, or handed to the pool) has another
attempt, and is left alone. The attempts are read after the set (their ids come from it), and
the list with them: a job handed to the pool before the attempts were read is in the list
(no BLPOP is in flight meanwhile: mailbox.quiet()), so held; one handed after has an attempt
the sweep never saw.

A job an enqueue handed to the pool is in the set and the list (one script wrote them, with
its attempt) until the mailbox reads it off the list. Read in two commands, the attempt and
the list could come from two servers during a failover (a master demoted keeps its clients and
answers reads from its data as it was, while another connection of the same client already
reaches the new master): the attempt read where a job was handed since, the list where it
never was, the job looked like an orphan, was requeued, and then ran twice (started by the
mailbox from the list, and again from its queue). In one MULTI both come from one server at
one instant; the set may come from the other, which only names the jobs to look at."""

from __future__ import annotations

from typing import Any

from redis.exceptions import ResponseError

from .keys import Keys
from .topology import is_cluster

__all__ = ["in_progress_and_handoffs"]


async def in_progress_and_handoffs(
    redis: Any, keys: Keys, pool_id: str
) -> tuple[list[Any], list[Any], dict[str, str]]:
    """The members of ``pool_id``'s in-progress set; then, at one instant on one server, the
    entries of its hand-off list and the attempt tokens of the set's jobs whose attempt record
    is this pool's (job id -> token, as settle.lua takes it). An older ACL rule that refuses
    LRANGE gives no hand-offs (none are made then either); a cluster (whose replicas redirect
    reads) reads them apart, the attempts first."""
    raw = list(await redis.zrange(keys.in_progress(pool_id), 0, -1))
    ids = [member.decode(errors="replace").partition(":")[0] for member in raw]
    listed: list[Any] | None = None
    if not is_cluster(redis):
        try:
            async with redis.pipeline(transaction=True) as pipe:
                if ids:
                    pipe.hmget(keys.attempts, ids)
                pipe.lrange(keys.handoff(pool_id), 0, -1)
                got = await pipe.execute()
            found, listed = (got[0] if ids else []), got[-1]
        except ResponseError:  # (the whole MULTI fails: read them apart, as below)
            pass
    if listed is None:
        found = await redis.hmget(keys.attempts, ids) if ids else []
        try:
            listed = await redis.lrange(keys.handoff(pool_id), 0, -1)
        except ResponseError:  # refused by an older ACL rule: no hand-offs either
            listed = []
    return raw, list(listed), _tokens(pool_id, ids, found)


def _tokens(pool_id: str, ids: list[str], found: list[Any]) -> dict[str, str]:
    """The attempt tokens of the jobs whose attempt record ("<pool id>:<token>") is this
    pool's, "-" for those with none (another pool's job is not this pool's to requeue)."""
    ours, tokens = pool_id + ":", {}
    for job_id, record in zip(ids, found, strict=True):
        if isinstance(record, bytes):
            record = record.decode(errors="replace")
        if isinstance(record, str) and record.startswith(ours):
            tokens[job_id] = record[len(ours) :]
        elif record is None:  # (lost data: requeued while no attempt is recorded, settle.lua)
            tokens[job_id] = "-"
    return tokens
