"""The KEYS and ARGV of a ``fetch.lua`` call (see :meth:`Scripts.fetch <.scripts.Scripts.fetch>`),
the same call packed for a pool's held connection (store/hotcalls.py), and the names its reply
says it skipped (:func:`fetch_skipped`).

A pool fetches once per batch of jobs, and most of the call is the same from one call to the
next: its 18 keys and those of each queue, the queues' arguments. hiredis packs each argument
anew (about 1,600 CPU instructions each, a ``sprintf`` among them), ~45 of them for a pool of one
job type: :class:`FetchPacker` packs those parts once and only the numbers that change per call
(the time, the batch, the suspects), the same bytes as :func:`~.bulk.pack_call` of
:func:`fetch_request`'s lists (tests/store/test_hotpack.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .adminscripts import Arg
from .bulk import bulks
from .keys import Keys

__all__ = ["FetchCall", "FetchPacker", "fetch_request", "fetch_skipped", "queue_keys"]

_MAX_CACHED = 1000  # queues whose packed parts are kept (cleared beyond: names come and go)


@dataclass(slots=True)
class FetchCall:
    """The arguments of one fetch (see :meth:`Scripts.fetch <.scripts.Scripts.fetch>`)."""

    pool_id: str
    now_ms: int
    batch: int
    queues: Sequence[tuple[str, int]]
    isolate: int
    suspects: int
    dead_timeout_ms: int
    specs: Mapping[str, str]
    idle_ms: int
    handoffs: bool | None
    beat_age_ms: int | None

    @property
    def handoff_arg(self) -> int:
        """The last argument with ``handoffs`` not None: how old the pool's last heartbeat may
        be for a hand-off (0: none)."""
        return max(1, self.beat_age_ms or self.dead_timeout_ms) if self.handoffs else 0


def fetch_request(k: Keys, c: FetchCall) -> tuple[list[str], list[Arg]]:
    """The KEYS and ARGV of the fetch ``c``."""
    keys = [k.jobs, k.running, k.in_progress(c.pool_id), k.paused, k.idle]
    keys += (k.unique, k.unique_of_job, k.unique_expiry, k.listening, k.recoveries)
    keys += (k.pools, k.attempts, k.attempt_seq, k.partitions, k.seq)
    keys += (k.dedup, k.dedup_of_job, k.scan_cursor)
    args: list[Arg] = [c.pool_id, c.now_ms, c.batch, k.events_channel, c.isolate, c.suspects]
    args += (c.dead_timeout_ms, k.wake_channel, c.idle_ms)
    for name, limit in c.queues:
        keys += queue_keys(k, name)
        args += (name, limit, c.specs.get(name, ""))
    if c.handoffs is not None:  # (the key of the one hand-off a mark allows: last)
        keys.append(k.handoff_armed(c.pool_id))
        args.append(c.handoff_arg)
    return keys, args


Parts = dict[tuple[str, str], str]  # (job name, partition) -> its running count's value


def fetch_skipped(flat: list[Any]) -> tuple[int, dict[str, str], Parts, dict[str, str]]:
    """Of fetch.lua's reply ``flat`` (status 0: four fields, five per job), where its jobs end,
    the names it skipped for their ``running`` count not being a counter, each with the value
    of the count, the partitions it passed over (their running count is not one), each with
    the value of the count, and the names it skipped for a key of theirs holding another type,
    each with that key: one list after the jobs, ``[name, value or [key], ...]``, then, when
    it passed a partition over, ``[name, partition, value, ...]`` last in it, only when it
    skipped or passed over one."""
    end = len(flat)
    if (end - 4) % 5 == 0:
        return end, {}, {}, {}
    pairs, parts = flat[-1], {}
    if len(pairs) % 2:
        t = [_text(x) for x in pairs[-1]]
        parts = {(t[i], t[i + 1]): t[i + 2] for i in range(0, len(t) - 2, 3)}
    names: dict[str, str] = {}
    wrong: dict[str, str] = {}
    for i in range(0, len(pairs) - 1, 2):
        value = pairs[i + 1]
        if isinstance(value, list):  # ([key]: of another type)
            wrong[_text(pairs[i])] = _text(value[0])
        else:
            names[_text(pairs[i])] = _text(value)
    return end - 1, names, parts, wrong


def _text(x: Any) -> str:
    return x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x)


def queue_keys(k: Keys, name: str) -> list[str]:
    """The eight keys of one queue in a fetch call."""
    return [
        k.queue(name), k.partition_queue(name), k.partitions_ready(name),
        k.partitions_waiting(name), k.partitions_running(name),
        k.rate_log(name), k.rate_expiry(name), k.idle_for(name),
    ]  # fmt: skip


class FetchPacker:
    """Packs the fetch calls of the pools of one namespace (see the module's docstring)."""

    def __init__(self, keys: Keys) -> None:
        self.keys = keys
        # the pool id, its 18 keys and its hand-off key, packed
        self._pool: tuple[str | None, str, str] = (None, "", "")
        self._queues: dict[tuple[str, int, str], tuple[str, str]] = {}  # -> keys, args packed
        self._channels = bulks([keys.events_channel]), bulks([keys.wake_channel])
        self._ascii = keys.prefix.isascii() and all(c.isascii() for c in self._channels)

    def pack(self, verb: bytes, function: bytes, c: FetchCall) -> bytes | None:
        """``verb function`` (EVALSHA sha, FCALL name) of ``c`` in the Redis protocol, as
        ``pack_call`` packs ``fetch_request``'s lists; None when a name, a spec, the pool id
        or the namespace is not ASCII (pack those; ``str.isascii`` is a flag look-up)."""
        if not (self._ascii and c.pool_id.isascii()):
            return None
        if self._pool[0] != c.pool_id:
            fixed = fetch_request(
                self.keys, FetchCall(c.pool_id, 0, 0, (), 0, 0, 0, {}, 0, None, 0)
            )
            armed = self.keys.handoff_armed(c.pool_id)
            self._pool = (c.pool_id, bulks(fixed[0]), bulks([armed]))
        _, fixed_keys, armed_key = self._pool
        cached, specs = self._queues, c.specs
        queue_keys_, queue_args = [], []
        for name, limit in c.queues:
            spec = specs.get(name, "")
            packed = cached.get((name, limit, spec))
            if packed is None:
                if not (name.isascii() and spec.isascii()):
                    return None
                if len(cached) >= _MAX_CACHED:
                    cached.clear()
                packed = (bulks(queue_keys(self.keys, name)), bulks([name, limit, spec]))
                cached[name, limit, spec] = packed
            queue_keys_.append(packed[0])
            queue_args.append(packed[1])
        handoff = c.handoffs is not None
        n_keys = 18 + 8 * len(c.queues) + handoff
        n_args = 9 + 3 * len(c.queues) + handoff
        events, wake = self._channels
        text = "".join(
            [
                f"*{3 + n_keys + n_args}\r\n",
                bulks([verb.decode(), function.decode(), n_keys]),
                fixed_keys,
                *queue_keys_,
                armed_key if handoff else "",
                bulks([c.pool_id, c.now_ms, c.batch]),
                events,
                bulks([c.isolate, c.suspects, c.dead_timeout_ms]),
                wake,
                bulks([c.idle_ms]),
                *queue_args,
                bulks([c.handoff_arg]) if handoff else "",
            ]
        )
        return text.encode()  # (every part ASCII: one byte a character)
