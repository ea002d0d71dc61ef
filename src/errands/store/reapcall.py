"""The KEYS and ARGV of a ``reap.lua`` call (see :meth:`Scripts.reap <.scripts.Scripts.reap>`),
and the reading of its reply: its counts, or its refusal as a :class:`~.records.ReapRefused`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .ackcall import limit_keys
from .adminscripts import Arg
from .keys import Keys
from .records import Reaped, ReapRefused

__all__ = ["read_reap_reply", "reap_request"]


def reap_request(
    k: Keys,
    pool_id: str,
    numbers: tuple[int, int],
    errors: tuple[bytes, bytes],
    members: Sequence[tuple[bytes | str, str, str]],
    history: bool,
    dedup_names: Mapping[str, str],
    *,
    read_to_end: bool = False,
    left_before: int = 0,
) -> tuple[list[str], list[Arg]]:
    """The KEYS and ARGV of one reap: ``numbers`` (dead timeout ms, max recoveries),
    ``errors`` (of a job buried as poison, of a malformed entry's job), ``members`` (member,
    id, name; name "" for a malformed entry). ``dedup_names``: job id of a malformed entry ->
    the job name of the dedup key its job holds (lib/dedup.lua), whose queue a rerun waiting
    for that key goes on when the job is buried (reap.lua checks the name against the key).
    ``read_to_end``: ``members`` end the caller's read of the set (only then, the set not
    drained and the read having left entries alone, ``left_before`` of them in its earlier
    calls or some in this one, reap.lua sets the pool's score in ``retired`` one dead timeout
    ahead)."""
    keys = [k.pools, k.in_progress(pool_id), k.pool_info(pool_id), k.jobs, k.running]
    keys += (k.priorities, k.recoveries, k.dead, k.errors, k.seq, k.idle, k.stats)
    keys += (k.cancel_requests, k.cancelled, k.retired, k.attempts, k.checkins)
    keys += (k.unique_of_job, k.unique, k.unique_expiry, k.ended, k.checkpoints)
    keys += (k.dedup, k.dedup_of_job, k.workflow_of, k.dedup_next, k.dedup_reruns)
    keys += (k.history_data, k.listening, k.partitions, k.handoff(pool_id), k.quiet_requests)
    index: dict[str, int] = {}
    args: list[Arg] = [pool_id, numbers[0], numbers[1], k.wake_channel, errors[0]]
    args += (errors[1], k.events_channel, "1" if history else "0")
    args.append(1 + left_before if read_to_end else 0)  # (ARGV[9]: 0, not the read's end)
    for member, id, name in members:
        queue_name = name or dedup_names.get(id, "")
        if queue_name and queue_name not in index:
            index[queue_name] = len(index) + 1
            keys += (k.queue(queue_name), *limit_keys(k, queue_name))
        args += (member, id, name, index.get(queue_name, 0))
    keys += (k.history_of(name) for name in index)
    return keys, args


def read_reap_reply(reply: Any) -> Reaped:
    """What a reap did; raises :class:`~.records.ReapRefused` when reap.lua refused the call
    (its reply is then the reason, a string, and nothing was written). The names whose entries
    it left alone (their ``running`` count is not a counter) are in ``Reaped.unfit``, the
    partitions whose entries it left alone (their running count is not one) in
    ``Reaped.unfit_parts``, with how many entries in ``Reaped.held``; the names whose entries it
    left alone for a key of theirs of another type (name -> that key) in ``Reaped.key_unfit``,
    with how many entries in ``Reaped.key_held``."""
    if isinstance(reply, bytes | str):
        reason = reply.decode(errors="replace") if isinstance(reply, bytes) else reply
        raise ReapRefused(reason)
    requeued, buried, removed, cancelled, alive, *rest = reply
    replaced = [f for f in rest if not isinstance(f, list)]
    lists = [[_text(v) for v in x] for x in rest if isinstance(x, list)]
    # entries left alone: for their name's count [name, value, ...], for their partition's
    # count [entries, name, partition, value, ...], for a key of their name's [entries, name,
    # key, ...]: the lists present are the first one, two or three
    lists += [[], ["0"], ["0"]][len(lists) :]
    flat = lists[0]
    left = dict(zip(flat[::2], flat[1::2], strict=True))
    count, *flat = lists[1]
    held = int(count)
    parts = {(n, p): v for n, p, v in zip(flat[::3], flat[1::3], flat[2::3], strict=True)}
    count, *flat = lists[2]
    keyed = dict(zip(flat[::2], flat[1::2], strict=True))
    fields = tuple(_text(f) for f in replaced)
    return Reaped(
        int(requeued),
        int(buried),
        int(cancelled),
        bool(removed),
        bool(alive),
        fields,
        left,
        parts,
        held,
        keyed,
        int(count),
    )


def _text(v: Any) -> str:
    return v.decode(errors="replace") if isinstance(v, bytes) else str(v)
