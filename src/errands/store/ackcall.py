"""The KEYS and ARGV of an ``ack.lua`` call (see :meth:`Scripts.ack <.scripts.Scripts.ack>`),
and the keys of a job name that freeing a partitioned job's slot touches."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .adminscripts import Arg
from .keys import Keys
from .records import Acked

__all__ = ["ACK_MAX", "AckReport", "ack_request", "limit_keys", "read_ack_reply"]

ACK_MAX = 1000  # jobs per ack.lua call (it refuses more: its unpack() calls have a limit)


@dataclass(slots=True)
class AckReport:
    """What ack calls did not acknowledge: ``refused``, the ids the fence refused (their attempt
    was no longer this pool's); ``unfit``, the ids ack.lua left alone because their workflow run
    has a key of another type, their partition's running count is not a counter, or their
    entry names them otherwise than their fetch did (nothing of them written; a re-send leaves
    them alone again)."""

    refused: list[str] = field(default_factory=list)
    unfit: list[str] = field(default_factory=list)


def _text(r: Any) -> str:
    return r.decode() if isinstance(r, bytes) else str(r)


def read_ack_reply(reply: Sequence[Any], into: AckReport) -> None:
    """Add one ack.lua reply ({acknowledged, U, U unfit ids, refused ids...}) to ``into``."""
    count = int(reply[1])
    into.unfit += (_text(r) for r in reply[2 : 2 + count])
    into.refused += (_text(r) for r in reply[2 + count :])


def limit_keys(k: Keys, name: str) -> list[str]:
    """The keys of a job name that freeing a partitioned job's slot touches (lib/limits.lua):
    partitions running, partition queue, partitions ready."""
    return [k.partitions_running(name), k.partition_queue(name), k.partitions_ready(name)]


def ack_request(
    k: Keys, pool_id: str, done: Sequence[Acked], wake: bool, now_ms: int, history: bool
) -> tuple[list[str], list[Arg]]:
    """The KEYS and ARGV of one ack call of ``done`` (at most ACK_MAX jobs): six values a job,
    its name and result TTL given once per name (the TTL of its first job), and four more for
    a job only when its TTL is another or an envelope is given (see ack.lua's header)."""
    keys = [k.jobs, k.running, k.in_progress(pool_id), k.priorities, k.recoveries]
    keys += (k.stats, k.idle, k.history_data, k.checkins, k.listening, k.errors)
    keys += (k.cancel_requests, k.attempts, k.unique_of_job, k.unique, k.unique_expiry)
    keys += (k.ended, k.checkpoints, k.dedup, k.dedup_of_job, k.workflow_of)
    keys += (k.dedup_next, k.dedup_reruns, k.seq, k.partitions)
    index: dict[str, tuple[int, int]] = {}  # name -> its index and TTL (its first job's)
    jobs: list[Arg] = []
    extras: list[Arg] = []
    name, i, ttl = None, 0, 0  # the name of the job before, its index and TTL
    for place, a in enumerate(done, 1):
        keys.append(k.done(a.id))
        if a.name != name:  # (a call's jobs come in runs of a name mostly)
            name = a.name
            i, ttl = index.setdefault(name, (len(index) + 1, a.ttl_ms))
        jobs += (a.id, i, a.result, a.started_ms, a.attempt, a.token)
        if a.ttl_ms != ttl or a.envelope_json or a.history_json:
            extras += (place, a.ttl_ms, a.envelope_json, a.history_json)
    args: list[Arg] = [k.wake_channel, "1" if wake else "0", k.events_channel, now_ms]
    args += ("1" if history else "0", len(done), pool_id, len(extras) // 4)
    args += (v for named, (_, first_ttl) in index.items() for v in (named, first_ttl))
    args += jobs
    args += extras
    keys += (k.history_of(name) for name in index)
    keys += (k.queue(name) for name in index)
    for name in index:
        keys += limit_keys(k, name)
    return keys, args
