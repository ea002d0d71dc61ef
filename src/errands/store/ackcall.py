"""The KEYS and ARGV of an ``ack.lua`` call (see :meth:`Scripts.ack <.scripts.Scripts.ack>`),
the same call packed for a pool's held connection (store/hotcalls.py), and the keys of a job
name that freeing a partitioned job's slot touches.

:class:`AckPacker` packs the 25 keys before the jobs' and those of each name once (hiredis packs
each argument anew, about 1,600 CPU instructions each), and each job's seven values (its
done-record key and six arguments) in one format: the same bytes as :func:`~.bulk.pack_call` of
:func:`ack_request`'s lists (tests/store/test_hotpack.py), without making the lists. The text is
made of ASCII strings (ids, names, tokens, keys: checked, ``str.isascii`` is a flag look-up) and
of the results and envelopes as bytes read one character a byte (latin-1), so that each bulk
string's length in characters is its length in bytes; an id, name, token, pool id or namespace
that is not ASCII leaves the call to the lists (``None``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .adminscripts import Arg
from .bulk import ANY_HEADS, HEADS, MAX_CALL_BYTES, bulks, sized_slices
from .keys import Keys
from .records import Acked

__all__ = [
    "ACK_MAX",
    "AckPacker",
    "AckReport",
    "ack_request",
    "ack_slices",
    "limit_keys",
    "read_ack_reply",
]

ACK_MAX = 1000  # jobs per ack.lua call (it refuses more: its unpack() calls have a limit)
# bytes of results (and envelopes given for the records) per ack.lua call, a larger job alone:
# as the enqueue calls' (bulk.py MAX_CALL_BYTES), Redis holds a whole command in its query
# buffer, closing a client past 1 GiB by default (32 results of 100 MB in one call did that)
ACK_CALL_BYTES = MAX_CALL_BYTES
# the bulk strings of the first attempt numbers, made once (an int's str(): ~500 CPU instructions)
_ATTEMPTS = [bulks([n]) for n in range(100)]
_UNSET = object()  # (AckPacker.pack: no job before)


@dataclass(slots=True)
class AckReport:
    """What ack calls did not acknowledge: ``refused``, the ids the fence refused (their attempt
    was no longer this pool's); ``unfit``, the ids ack.lua left alone because their workflow run
    has a key of another type, the running count of their job name or of their partition is
    not a counter, or their entry names them otherwise than their fetch did (nothing of them
    written; a re-send leaves them alone again)."""

    refused: list[str] = field(default_factory=list)
    unfit: list[str] = field(default_factory=list)


def _text(r: Any) -> str:
    return r.decode() if isinstance(r, bytes) else str(r)


def read_ack_reply(reply: Sequence[Any], into: AckReport) -> None:
    """Add one ack.lua reply ({acknowledged, U, U unfit ids, refused ids...}) to ``into``."""
    count = int(reply[1])
    into.unfit += (_text(r) for r in reply[2 : 2 + count])
    into.refused += (_text(r) for r in reply[2 + count :])


def ack_slices(done: Sequence[Acked], max_bytes: int | None = None) -> list[tuple[int, int]]:
    """The ``[start, end)`` ranges of the ack calls of ``done``, in order: at most ACK_MAX jobs
    and ``max_bytes`` (``ACK_CALL_BYTES``) of results, envelopes and history envelopes each (a
    larger job alone). The common case costs a sum of their lengths, nothing copied."""
    limit = ACK_CALL_BYTES if max_bytes is None else max_bytes
    n = len(done)
    size = 0
    for a in done:  # (~26 ns a job: the extras are empty mostly, a truth test is cheaper)
        size += len(a.result)
        if a.envelope_json or a.history_json:
            size += len(a.envelope_json) + len(a.history_json)
    if size <= limit:
        if 0 < n <= ACK_MAX:
            return [(0, n)]
        return [(s, min(s + ACK_MAX, n)) for s in range(0, n, ACK_MAX)]
    sizes = [len(a.result) + len(a.envelope_json) + len(a.history_json) for a in done]
    return sized_slices(sizes, ACK_MAX, limit)


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


class AckPacker:
    """Packs the ack calls of the pools of one namespace (see the module's docstring)."""

    def __init__(self, keys: Keys) -> None:
        self.keys = keys
        self._done = keys.prefix + "done:"  # (keys.done's, for an id it need not check)
        self._pool: tuple[str | None, str] = (None, "")  # the pool id and its 25 keys, packed
        self._names: dict[str, tuple[str, str, str]] = {}  # name -> its keys, packed
        self._channels = bulks([keys.wake_channel]), bulks([keys.events_channel])
        self._ascii = keys.prefix.isascii() and all(c.isascii() for c in self._channels)

    def pack(
        self,
        verb: bytes,
        function: bytes,
        pool_id: str,
        done: Sequence[Acked],
        wake: bool,
        now_ms: int,
        history: bool,
        heads: dict[int, str] = HEADS,
    ) -> bytes | None:
        """``verb function`` (EVALSHA sha, FCALL name) of the ack call of ``done`` in the
        Redis protocol, as ``pack_call`` packs ``ack_request``'s lists; None when an id,
        name, token, the pool id or the namespace is not ASCII (pack those). ``heads``: the
        heads of bulk strings by length (bulk.py)."""
        if not (self._ascii and pool_id.isascii()):
            return None
        k, prefix = self.keys, self._done
        if self._pool[0] != pool_id:
            self._pool = (pool_id, bulks(ack_request(k, pool_id, (), False, 0, False)[0]))
        index: dict[str, tuple[int, int]] = {}  # name -> its index and TTL (its first job's)
        keys: list[str] = []
        jobs: list[str] = []
        extras: list[str] = []
        name, i, ttl = None, "", 0  # the name of the job before, its index (packed) and TTL
        # the token, result and start of the job before and theirs packed: the jobs of a fetch
        # share its token, most results are the same b"null", and jobs started together share
        # their start's millisecond (each packed once, not once a job)
        token = ""  # (token_text empty: made for the first job's token, whatever it is)
        # (no job's: the first job's result and start are packed whatever they are, and a
        # None there fails as before, not by a value left out of the frame)
        result: object = _UNSET
        # (compared with ==, not `is`: an int; a later 1.0 or True equal to it would be packed
        # as its text)
        started: object = _UNSET
        token_text = result_text = started_text = ""
        for place, a in enumerate(done, 1):
            sid = a.id
            if not sid.isascii():
                return None
            if a.token is not token:
                token = a.token
                if not token.isascii():
                    return None
                token_text = ""
            # (ASCII: the same as str.isalnum, with a table look-up a character instead of a
            # call of the Unicode database's, ~40 CPU instructions a character)
            key = prefix + sid if sid.encode().isalnum() else k.done(sid)
            if a.name != name:
                name = a.name
                if not name.isascii():
                    return None
                at, ttl = index.setdefault(name, (len(index) + 1, a.ttl_ms))
                i = bulks([at])
            n = a.attempt
            attempt = _ATTEMPTS[n] if 0 <= n < 100 else bulks([n])  # (packed)
            try:
                if not token_text:
                    token_text = f"{heads[len(token)]}{token}\r\n"
                if a.result is not result:
                    result = a.result
                    text = a.result.decode("latin-1")
                    result_text = f"{heads[len(text)]}{text}\r\n"
                if a.started_ms != started:
                    started = a.started_ms
                    text = str(a.started_ms)
                    started_text = f"{heads[len(text)]}{text}\r\n"
                key_text = f"{heads[len(key)]}{key}\r\n"
                job_text = (
                    f"{heads[len(sid)]}{sid}\r\n{i}{result_text}{started_text}{attempt}{token_text}"
                )
            except KeyError:  # a length of HEADS_MAX or more (bulk.py): the call packed again
                # with the heads of any length (for this call only: its jobs cost ~1.1x, plus
                # the pass given up; a job of a long value ~16,000 CPU instructions, was ~50,000)
                args = (verb, function, pool_id, done, wake, now_ms, history)
                return self.pack(*args, heads=ANY_HEADS)
            keys.append(key_text)
            jobs.append(job_text)
            if a.ttl_ms != ttl or a.envelope_json or a.history_json:
                envelope, old = a.envelope_json.decode("latin-1"), a.history_json.decode("latin-1")
                extras.append(bulks([place, a.ttl_ms, envelope, old]))
        return self._frame(
            verb, function, pool_id, index, keys, jobs, extras, wake, now_ms, history
        )

    def _frame(
        self,
        verb: bytes,
        function: bytes,
        pool_id: str,
        index: dict[str, tuple[int, int]],
        keys: list[str],
        jobs: list[str],
        extras: list[str],
        wake: bool,
        now_ms: int,
        history: bool,
    ) -> bytes:
        """The call in the Redis protocol around its jobs' packed keys, values and extras."""
        named = [self._of(name) for name in index]
        n_keys = 25 + len(keys) + 5 * len(index)
        n_args = 8 + 2 * len(index) + 6 * len(jobs) + 4 * len(extras)
        wake_channel, events_channel = self._channels
        text = "".join(
            [
                f"*{3 + n_keys + n_args}\r\n",
                bulks([verb.decode(), function.decode(), n_keys]),
                self._pool[1],
                *keys,
                *(history_of for history_of, _, _ in named),
                *(queue for _, queue, _ in named),
                *(limits for _, _, limits in named),
                wake_channel,
                "$1\r\n1\r\n" if wake else "$1\r\n0\r\n",
                events_channel,
                bulks([now_ms, "1" if history else "0", len(jobs), pool_id, len(extras)]),
                bulks([v for named_, (_, first_ttl) in index.items() for v in (named_, first_ttl)]),
                *jobs,
                *extras,
            ]
        )
        return text.encode("latin-1")  # (ASCII strings and bytes read as latin-1: see above)

    def _of(self, name: str) -> tuple[str, str, str]:
        """The keys of a name in an ack call, packed: its history, its queue, its limits'."""
        packed = self._names.get(name)
        if packed is None:
            if len(self._names) >= 1000:
                self._names.clear()
            k = self.keys
            packed = (
                bulks([k.history_of(name)]),
                bulks([k.queue(name)]),
                bulks(limit_keys(k, name)),
            )
            self._names[name] = packed
        return packed
