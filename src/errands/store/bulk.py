"""The request of the enqueue script (lua/enqueue.lua), and its packing for many jobs at once.

The script takes its jobs as columns: the ids, the envelopes, and one short spec per job
(``"<name index>"``, or ``"<name index> <priority> <due ms> <partition>"`` when one of these is
set). Three arguments and one key per job instead of seven and one: on a call of thousands of
jobs, redis-py's packing of the command (each argument encoded on its own) cost more than
building the jobs, and the script reads its columns with one command per 1,000 jobs.
``enqueue_many`` sends it packed by errands (store/pinned.py: ``BulkEnqueue``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ..clock import to_ms
from ..job import Job
from .adminscripts import Arg
from .keys import Keys

try:
    import hiredis
except ImportError:  # pragma: no cover (a dependency: redis[hiredis])
    hiredis = None  # type: ignore[assignment]

__all__ = [
    "ANY_HEADS",
    "HEADS",
    "HEADS_MAX",
    "MAX_CALL_BYTES",
    "MAX_CALL_JOBS",
    "Columns",
    "OneJobHeads",
    "bulks",
    "call_slices",
    "columns",
    "enqueue_request",
    "head",
    "job_spec",
    "name_keys",
    "one_job_command",
    "pack_call",
    "pack_evalsha",
    "sized_slices",
]

Columns = tuple[list[str], list[str], list[bytes], list[str]]  # names, ids, envelopes, specs
OneJobHeads = dict[str, tuple[bytes, bytes, bytes]]  # name -> its parts of a one-job call, packed
_EVALSHA = b"*%d\r\n$7\r\nEVALSHA\r\n"  # the head of an EVALSHA command: how many parts
_BULK = b"$%d\r\n%b\r\n"  # one part of a command


MAX_CALL_JOBS = 5000  # jobs of one enqueue script call (lua/enqueue.lua takes at most 5,000)
# envelope bytes of one enqueue script call (a larger envelope goes alone): Redis holds a whole
# command in its query buffer (closing a client past 1 GiB, by default) and runs the script
# without serving anyone else; 1,000 jobs of 1 MiB (max_payload's default) would be ~1 GiB
MAX_CALL_BYTES = 16 << 20


def call_slices(
    envelopes: Sequence[bytes], max_jobs: int = MAX_CALL_JOBS, max_bytes: int = MAX_CALL_BYTES
) -> list[tuple[int, int]]:
    """The ``[start, end)`` ranges of the script calls storing ``envelopes``, in order: at
    most ``max_jobs`` jobs and ``max_bytes`` bytes of envelopes each (a larger one alone)."""
    n = len(envelopes)
    if sum(map(len, envelopes)) <= max_bytes:  # (the common case: one pass in C)
        return [(s, min(s + max_jobs, n)) for s in range(0, n, max_jobs)]
    return sized_slices(list(map(len, envelopes)), max_jobs, max_bytes)


def sized_slices(sizes: Sequence[int], max_jobs: int, max_bytes: int) -> list[tuple[int, int]]:
    """The ``[start, end)`` ranges of calls of items of ``sizes`` bytes, in order: at most
    ``max_jobs`` items and ``max_bytes`` bytes each (an item larger alone in its call)."""
    n = len(sizes)
    slices: list[tuple[int, int]] = []
    start = size = 0
    for i, item in enumerate(sizes):
        if i > start and (i - start == max_jobs or size + item > max_bytes):
            slices.append((start, i))
            start, size = i, 0
        size += item
    if n:
        slices.append((start, n))
    return slices


def job_spec(index: int, priority: int, due_ms: int, partition: str) -> str:
    """One job's spec argument: its name's 1-based index among the call's names, then its
    priority, due time (ms, 0 = now) and partition ('' = none) when one of them is set."""
    if priority or due_ms or partition:
        return f"{index} {priority} {due_ms} {partition}"
    return str(index)


def columns(jobs: Sequence[Job], envelopes: Sequence[bytes]) -> Columns:
    """The names, ids, envelopes (one per job, given) and specs of an ``enqueue`` call of
    ``jobs``."""
    index: dict[str, int] = {}
    specs = [
        job_spec(index.setdefault(j.name, len(index) + 1), j.priority,
                 to_ms(j.run_at) if j.run_at is not None else 0, j.partition or "")
        for j in jobs
    ]  # fmt: skip
    return list(index), [j.id for j in jobs], list(envelopes), specs


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
        keys_ += name_keys(k, name)
    keys_ += k.done_many(ids)
    keys_ += handoff_keys(k)
    args: list[Arg] = [k.wake_channel, len(ids), k.events_channel, len(names), *names]
    args += ids
    args += envelopes
    args += specs
    args += k.pool_prefixes
    return keys_, args


def name_keys(k: Keys, name: str) -> tuple[str, str, str, str, str]:
    """The five keys of job ``name``'s own that an ``enqueue`` call passes for it: its queue,
    scheduled set, partition queue, partitions ready and idle pools (see lua/enqueue.lua)."""
    return (k.queue(name), k.scheduled(name), k.partition_queue(name), k.partitions_ready(name),
            k.idle_for(name))  # fmt: skip


def handoff_keys(k: Keys) -> list[str]:
    """The keys after the result-record keys: those an enqueue reads and writes when it hands
    its job to an idle pool (lua/lib/handoff.lua), then the two it reads to tell a workflow
    member's id (lua/lib/wfids.lua)."""
    return [k.paused, k.pools, k.attempts, k.attempt_seq, k.running, k.runtime_limits,
            k.workflows, k.workflow_of]  # fmt: skip


def one_job_command(
    keys: Keys, sha: bytes, heads: OneJobHeads, name: str, job_id: str, envelope: bytes, spec: str
) -> bytes:
    """``EVALSHA sha`` of an ``enqueue`` call of one job of ``name`` (``spec``: its
    :func:`job_spec`) in the Redis protocol: the bytes ``pack_evalsha`` makes of
    ``enqueue_request``'s request. ``heads`` keeps each name's part of the command, packed (up
    to 1,000 names): only the job's result-record key, id, envelope and spec are packed per
    call, each by :func:`_bulk`."""
    head = heads.get(name)
    if head is None:
        if len(heads) >= 1000:
            heads.clear()
        name_keys, first = enqueue_request(keys, [name], [], [], [])
        first[1] = 1  # the number of jobs
        extra = handoff_keys(keys)  # (after the result-record key; their prefixes last)
        tail = list(keys.pool_prefixes)
        name_keys, first = name_keys[: -len(extra)], first[: -len(tail)]
        count = 3 + len(name_keys) + 1 + len(extra) + len(first) + 3 + len(tail)
        numkeys = str(len(name_keys) + 1 + len(extra))
        before = _EVALSHA % count + _strs([sha.decode(), numkeys, *name_keys])
        after = _strs(extra) + b"".join(_arg_parts(first))
        head = heads[name] = (before, after, _strs(tail))
    done, id_, spec_ = keys.done(job_id).encode(), job_id.encode(), spec.encode()  # (as _bulk)
    return b"%b$%d\r\n%b\r\n%b$%d\r\n%b\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n%b" % (
        head[0], len(done), done, head[1], len(id_), id_, len(envelope), envelope,
        len(spec_), spec_, head[2])  # fmt: skip


def pack_call(
    sha: bytes, keys: Sequence[str], args: Sequence[Arg], verb: bytes = b"EVALSHA"
) -> bytes:
    """``EVALSHA sha len(keys) *keys *args`` in the Redis protocol (``verb`` b"FCALL": of the
    function ``sha`` names): by hiredis (in C: 2 us for a one-job enqueue against 9 us for
    pack_evalsha; 0.4 against 0.6 us per job of a call of 1,000), else (no hiredis, or a type
    it does not pack: a bool) by ``pack_evalsha``."""
    if hiredis is not None:
        try:
            command = (verb, sha, len(keys), *keys, *args)
            packed: bytes = hiredis.pack_command(command)  # type: ignore[arg-type]
            return packed
        except TypeError:
            pass
    return pack_evalsha(sha.decode(), keys, args, verb)


def pack_evalsha(
    sha: str, keys: Sequence[str], args: Sequence[Arg], verb: bytes = b"EVALSHA"
) -> bytes:
    """``EVALSHA sha len(keys) *keys *args`` in the Redis protocol (strings, bytes, ints); or
    ``verb`` (b"FCALL") instead of EVALSHA."""
    head = [
        b"*%d\r\n" % (len(keys) + len(args) + 3),
        _bulk(verb),
        _strs([sha, str(len(keys)), *keys]),
    ]
    return b"".join(head + _arg_parts(args))


def _arg_parts(args: Sequence[Arg]) -> list[bytes]:
    """``args`` packed a run of one type at a time (the runs)."""
    out: list[bytes] = []
    run: list[Any] = []
    for value in args:
        if run and type(value) is not type(run[0]):
            out.append(_pack_run(run))
            run = []
        run.append(value)
    out.append(_pack_run(run))
    return out


def _pack_run(run: list[Any]) -> bytes:
    if not run or isinstance(run[0], str):
        return _strs(run)
    if isinstance(run[0], bytes):
        return b"".join([_BULK % (len(v), v) for v in run])  # (_bulk's, without a call each)
    return _strs([str(v) if isinstance(v, int) else repr(v) for v in run])


def _bulk(value: bytes) -> bytes:
    return _BULK % (len(value), value)


HEADS_MAX = 4096
HEADS: dict[int, str] = {n: f"${n}\r\n" for n in range(HEADS_MAX)}
"""``HEADS[n]``: ``"$<n>\r\n"``, the head of a bulk string of n bytes, for every length under
HEADS_MAX, made at import (0.7 ms, about 0.5 MB): formatting an int costs ~450 CPU
instructions, a look-up ~60. A plain dict: a dict subclass's look-up (``__missing__``) calls its
``__getitem__`` through the type's slot, ~300. A longer length (a result, an envelope, a key of a
long namespace: nothing bounds them) raises KeyError: the caller makes its head with :func:`head`
(as :func:`bulks` does) or looks it up in ANY_HEADS (as AckPacker does)."""


def head(n: int) -> str:
    """``"$<n>\r\n"``: HEADS's, or made for a length of HEADS_MAX or more."""
    return HEADS[n] if n < HEADS_MAX else f"${n}\r\n"


class _AnyHeads(dict[int, str]):
    def __missing__(self, n: int) -> str:
        return head(n)


ANY_HEADS: dict[int, str] = _AnyHeads(HEADS)
"""The head of a bulk string of any length, looked up as in HEADS: HEADS's (a copy: its strings
shared, ~150 KB), and for a longer length :func:`head`'s (``__missing__``). A look-up costs a
little more than in HEADS (a dict subclass's: ~1.7x), one that misses much more (~10x)."""


def bulks(values: Iterable[str | int]) -> str:
    """``values`` as bulk strings of the Redis protocol, as text: the bytes hiredis packs once
    encoded when the text is ASCII (one byte a character: the lengths are right), which the
    caller checks (store/fetchcall.py, store/ackcall.py: their calls packed in one format)."""
    texts = list(map(str, values))
    try:
        return "".join([f"{HEADS[len(v)]}{v}\r\n" for v in texts])
    except KeyError:  # a length of HEADS_MAX or more (the table is not an argument, as in
        # AckPacker.pack: in a comprehension that is a closure, +350 CPU instructions a call)
        return "".join([f"{head(len(v))}{v}\r\n" for v in texts])


def _strs(values: Sequence[str]) -> bytes:
    text = bulks(values)
    if text.isascii():  # one byte per character: the lengths are right
        return text.encode()
    return b"".join([_BULK % (len(d), d) for d in (v.encode() for v in values)])
