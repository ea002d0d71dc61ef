"""The request of the enqueue script (lua/enqueue.lua), and its packing for many jobs at once.

The script takes its jobs as columns: the ids, the envelopes, and one short spec per job
(``"<name index>"``, or ``"<name index> <priority> <due ms> <partition>"`` when one of these is
set). Three arguments and one key per job, instead of one per field: on a call of thousands of
jobs, packing the command (redis-py encodes each argument on its own) cost more than building
the jobs. :func:`pack_evalsha` packs the whole command for the bulk path in a few joins.
"""

from __future__ import annotations

from collections.abc import Sequence

from .adminscripts import Arg
from .keys import Keys

__all__ = ["enqueue_request", "job_spec", "pack_evalsha"]


def job_spec(index: int, priority: int, due_ms: int, partition: str) -> str:
    """One job's spec argument: its name's 1-based index among the call's names, then its
    priority, due time (ms, 0 = now) and partition ('' = none) when one of them is set."""
    if priority or due_ms or partition:
        return f"{index} {priority} {due_ms} {partition}"
    return str(index)


def enqueue_request(
    keys: Keys,
    names: Sequence[str],
    ids: Sequence[str],
    envelopes: Sequence[bytes],
    specs: Sequence[str],
) -> tuple[list[str], list[Arg]]:
    """The KEYS and ARGV of an ``enqueue`` call of these jobs (see lua/enqueue.lua)."""
    k = keys
    keys_ = [k.jobs, k.priorities, k.seq, k.names, k.idle, k.listening, k.ended, k.partitions]
    for name in names:
        keys_ += (k.queue(name), k.scheduled(name))
        keys_ += (k.partition_queue(name), k.partitions_ready(name))
    keys_ += [k.done(i) for i in ids]
    args: list[Arg] = [k.wake_channel, len(ids), k.events_channel, len(names), *names]
    args += ids
    args += envelopes
    args += specs
    return keys_, args


def pack_evalsha(sha: str, keys: Sequence[str], args: Sequence[Arg]) -> bytes:
    """``EVALSHA sha len(keys) *keys *args`` in the Redis protocol. Strings, bytes and ints;
    runs of strings and of bytes are packed in one join each."""
    out = [b"*%d\r\n$7\r\nEVALSHA\r\n$%d\r\n%s\r\n" % (len(keys) + len(args) + 3, len(sha),
                                                      sha.encode())]  # fmt: skip
    out.append(_strs([str(len(keys)), *keys]))
    run: list[Arg] = []
    for value in args:
        if run and type(value) is not type(run[0]):
            out.append(_pack_run(run))
            run = []
        run.append(value)
    if run:
        out.append(_pack_run(run))
    return b"".join(out)


def _pack_run(run: list[Arg]) -> bytes:
    first = run[0]
    if isinstance(first, str):
        return _strs(run)  # type: ignore[arg-type]
    if isinstance(first, bytes):
        return b"".join([b"$%d\r\n%s\r\n" % (len(v), v) for v in run])  # type: ignore[arg-type]
    return _strs([str(v) if isinstance(v, int) else repr(v) for v in run])


def _strs(values: Sequence[str]) -> bytes:
    text = "".join([f"${len(v)}\r\n{v}\r\n" for v in values])
    if text.isascii():  # a character is a byte
        return text.encode()
    return b"".join([b"$%d\r\n%s\r\n" % (len(d), d) for d in (v.encode() for v in values)])
