"""The job names a fetch skipped because their ``running`` count is not a counter (lua/fetch.lua:
written by hand, a bad restore; the count is left as it is, and none of the name's jobs is
fetched until it is repaired, while the pool's other names are served as usual).

A pool logs one error per such name, naming the key, the field and how to repair it, once while
the name stays skipped (a pool fetches many times a second), and logs when a fetch serves it
again. The reaper keeps the names, and partitions, its passes leave alone (lua/reap.lua) the same
way, with its own lines (worker/reaper.py: a subclass), and reads their counts to tell when
they are counters again (:func:`counters_again`). Pure but for the log lines and that read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any, Generic, TypeVar

from ..store.stored import stored_number

__all__ = ["SkippedNames", "counters_again", "is_counter"]

log = logging.getLogger("errands.worker")

K = TypeVar("K", bound=Hashable)  # what is left alone: a job name (the reaper: or a partition)


def is_counter(value: bytes | str | None) -> bool:
    """``value``, a hash field's as HMGET gives it, is one HINCRBY counts on exactly, as
    lib/types.lua's is_counter reads it: absent, or an integer as Redis spells it
    (:func:`~errands.store.stored.stored_number`) within +/-2^53 once read as a double (Lua's
    tonumber: 2^53 + 1 reads as 2^53 there, and passes)."""
    if value is None:
        return True
    number = stored_number(value)
    return number is not None and abs(float(number)) <= 2.0**53


async def counters_again(
    redis: Any, count_of: Callable[[K], tuple[str, str]], keys: Iterable[K]
) -> list[K]:
    """Those of ``keys`` whose count (``count_of``: key -> the hash and the field holding it) is
    a counter now, or gone: one HMGET per hash. Never raises: the keys of a hash that cannot be
    read (of another type, Redis away) are not among them (a later read tells)."""
    by_hash: dict[str, list[tuple[K, str]]] = {}
    for key in keys:
        hash_key, field = count_of(key)
        by_hash.setdefault(hash_key, []).append((key, field))
    again: list[K] = []
    for hash_key, pairs in by_hash.items():
        try:
            values = await redis.hmget(hash_key, [field for _, field in pairs])
        except Exception as exc:  # (a read for the log only: the caller goes on)
            log.debug("reading the running counts in %s failed (%r)", hash_key, exc)
            continue
        again += [key for (key, _), value in zip(pairs, values, strict=True) if is_counter(value)]
    return again


class SkippedNames(Generic[K]):
    """The names left alone now (name -> the value of its count), each logged once: by a pool's
    fetches (these lines; :meth:`log_skipped` and :meth:`log_served` say it otherwise, of names
    or of other keys: the reaper's partitions)."""

    def __init__(self, running_key: str) -> None:
        self.running_key = running_key
        self.names: dict[K, str] = {}

    def note(self, fetched: Iterable[K], skipped: Mapping[K, str]) -> None:
        """A fetch of the names ``fetched`` skipped ``skipped`` (name -> its count's value): each
        name of ``fetched`` not skipped again is served."""
        for name, value in skipped.items():
            if name not in self.names:
                self.names[name] = value
                self.log_skipped(name, value)
        if len(self.names) > len(skipped):
            for name in fetched:
                if name in self.names and name not in skipped:
                    del self.names[name]
                    self.log_served(name)

    def log_skipped(self, name: K, value: str) -> None:
        """The line of a name skipped (once while it stays so)."""
        log.error(
            "job name %s is not fetched: its running count (field %s of hash %s) holds "
            "%r, not a counter; repair it with HSET %s %s <n>, <n> the jobs of %s in "
            "the pools' in-progress sets (0: HDEL %s %s); its finished jobs are parked "
            "until then (see docs/reliability.md)",
            name,
            name,
            self.running_key,
            value,
            self.running_key,
            name,
            name,
            self.running_key,
            name,
            extra={"job_name": name},
        )

    def log_served(self, name: K) -> None:
        """The line of a name served again."""
        log.warning("job name %s: its running count is a counter again: served", name)
