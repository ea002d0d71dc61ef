"""The KEYS and ARGV of a ``settle.lua`` call (see :meth:`Scripts.settle
<.scripts.Scripts.settle>`): one job's, or several jobs' in one ``{many}`` call."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .ackcall import limit_keys
from .adminscripts import Arg
from .keys import Keys
from .records import Settle, SettleRefused

__all__ = [
    "SETTLE_BYTES",
    "SETTLE_MAX",
    "read_settle_reply",
    "settle_chunks",
    "settle_many_request",
    "settle_request",
    "settled_or_raise",
]

# jobs per settle.lua call sent by the worker (Settler._send_many): a batch's failed jobs, or its
# jobs going back at a stop, in calls of this many (about 50 ms of Redis each on the test machine)
SETTLE_MAX = 500
SETTLE_BYTES = 8 * 1024 * 1024  # and at most about this many bytes of arguments (one larger
# job goes alone): a batch of large jobs would make a call of up to SETTLE_MAX times their size


def settle_request(k: Keys, pool_id: str, s: Settle) -> tuple[list[str], list[Arg]]:
    """The KEYS and ARGV of one job's settle."""
    keys = [k.jobs, k.running, k.in_progress(pool_id), k.priorities, k.recoveries]
    keys += (k.errors, k.stats, k.seq, k.idle, s.target, k.history_data)
    keys += (k.history_of(s.name), k.done(s.id), k.listening, k.checkins, k.cancel_requests)
    keys += (k.cancelled, *state_keys(k), k.dedup, k.dedup_of_job, k.workflow_of)
    keys += (k.dedup_next, k.dedup_reruns, k.queue(s.name), k.partitions)
    keys += (*limit_keys(k, s.name), k.pools, k.rate_log(s.name), k.idle_for(s.name))
    score = s.score_ms  # (a whole float as an integer: redis-py spells 12.0 '12.0', which
    if isinstance(score, float) and float(score).is_integer():  # settle.lua refuses)
        score = int(score)
    args: list[Arg] = [s.id, s.name, s.mode, s.envelope, score, s.error, s.dead_max]
    args += (s.dead_min_ms, k.wake_channel, s.counter, s.now_ms, s.attempt)
    args += ("1" if s.history else "0", k.events_channel, s.ttl_ms, s.started_ms)
    args += (pool_id, s.token, s.envelope_json, s.history_json)
    args += ("1" if s.unstart else "", s.unstart_spec, "1" if s.wake else "0")
    return keys, args


def settle_many_request(
    k: Keys, pool_id: str, settles: Sequence[Settle]
) -> tuple[list[str], list[Arg]]:
    """The KEYS and ARGV of one ``{many}`` call settling ``settles`` (see lua/settle.lua)."""
    keys: list[str] = []
    args: list[Arg] = ["{many}", len(settles), 0, 0]
    for s in settles:
        one_keys, one_args = settle_request(k, pool_id, s)
        if args[2] and (args[2], args[3]) != (len(one_keys), len(one_args)):
            raise ValueError("settle_many: the jobs must take as many keys and args")
        keys += one_keys
        args += one_args
        args[2], args[3] = len(one_keys), len(one_args)
    return keys, args


def settle_chunks(k: Keys, pool_id: str, settles: Sequence[Settle]) -> list[list[Settle]]:
    """``settles`` in order, in calls of at most SETTLE_MAX jobs and SETTLE_BYTES of arguments
    (a job whose own arguments are larger goes alone)."""
    chunks: list[list[Settle]] = []
    size = 0
    for s in settles:
        args = settle_request(k, pool_id, s)[1]
        n = sum(len(a) if isinstance(a, str | bytes) else 8 for a in args)
        if not chunks or len(chunks[-1]) >= SETTLE_MAX or size + n > SETTLE_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(s)
        size += n
    return chunks


def state_keys(k: Keys) -> list[str]:
    """attempts, unique_of_job, unique, unique_expiry, ended, checkpoints: the keys
    lib/jobstate.lua needs besides the common ones."""
    return [k.attempts, k.unique_of_job, k.unique, k.unique_expiry, k.ended, k.checkpoints]


def read_settle_reply(reply: Any, jobs: int) -> list[bool | SettleRefused]:
    """Each job's outcome from a settle.lua reply (one job's, or the list of a ``{many}``
    call's): 1 or 0 (settled or not), or a string, the reason it was refused (a ``{many}``
    call's reply is one string when its counts do not fit: every job refused)."""
    if jobs > 1 and isinstance(reply, list):
        return [_outcome(r) for r in reply]
    return [_outcome(reply)] * jobs


def _outcome(reply: Any) -> bool | SettleRefused:
    if isinstance(reply, bytes | str):
        return SettleRefused(reply.decode(errors="replace") if isinstance(reply, bytes) else reply)
    return bool(reply)


def settled_or_raise(outcomes: list[bool | SettleRefused]) -> list[bool]:
    """``outcomes`` as booleans, raising the first refusal among them."""
    for r in outcomes:
        if isinstance(r, SettleRefused):
            raise r
    return [bool(r) for r in outcomes]
