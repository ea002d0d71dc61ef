"""The job names a fetch skipped because their ``running`` count is not a counter (lua/fetch.lua:
written by hand, a bad restore; the count is left as it is, and none of the name's jobs is
fetched until it is repaired, while the pool's other names are served as usual), and the
partitions it passed over because their running count is not one (lib/limits.lua: none of the
partition's jobs starts until it is repaired, the name's other partitions are served), and the
names it skipped because one of their own keys holds another type (lib/fetchcheck.lua: the same
as a count, until the key is repaired).

A pool logs one error per such name or partition, naming the key, the field and how to repair
it, once while it stays skipped (a pool fetches many times a second; again when what holds a
name back moves to another key, or between its count and a key: not served then), and logs when
it is served again: a name when a fetch of it skips it no more; a partition (a fetch meets it
only in its turn) when :meth:`SkippedParts.recheck` reads its count a counter again. The reaper
keeps the names, and partitions, its passes leave alone (lua/reap.lua) the same way, with its
own lines (worker/reaper.py: a subclass), and reads their counts the same way
(:func:`counters_again`). Pure but for the log lines and those reads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any, Generic, TypeVar

from ..store.keyrepair import own_key_repair
from ..store.keys import Keys
from ..store.records import FetchResult
from ..store.stored import stored_number

__all__ = [
    "FetchSkips",
    "SkippedKeys",
    "SkippedNames",
    "SkippedParts",
    "counters_again",
    "is_counter",
]

log = logging.getLogger("errands.worker")

K = TypeVar("K", bound=Hashable)  # what is left alone: a job name, or (job name, partition)


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
    or of other keys: :class:`SkippedParts`, the reaper's)."""

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

    def moved(self, names: Iterable[K]) -> None:
        """``names`` are skipped for another reason now (their lines are another instance's):
        forgotten, not served (a name whose count was repaired while one of its keys holds
        another type is not served)."""
        for name in names:
            self.names.pop(name, None)

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


class SkippedParts(SkippedNames[tuple[str, str]]):
    """The partitions a pool's fetches pass over now ((job name, partition) -> the value of its
    count), logged once; noted with nothing ``fetched`` (a fetch meets a partition only in its
    turn): :meth:`recheck` serves them again."""

    def __init__(self, keys: Keys) -> None:
        super().__init__(keys.running)
        self.keys = keys

    def log_skipped(self, name: tuple[str, str], value: str) -> None:
        job_name, part = name
        key = self.keys.partitions_running(job_name)
        log.error(
            "partition %r of job name %s is not fetched: its running count (field %s of hash "
            "%s) holds %r, not a counter; repair it with HSET %s %s <n>, <n> the jobs of the "
            "partition in the pools' in-progress sets (0: HDEL %s %s); its finished jobs are "
            "parked until then (see docs/reliability.md)",
            part,
            job_name,
            part,
            key,
            value,
            key,
            part,
            key,
            part,
            extra={"job_name": job_name},
        )

    def log_served(self, name: tuple[str, str]) -> None:
        job_name, part = name
        log.warning(
            "partition %r of job name %s: its running count is a counter again: served",
            part,
            job_name,
            extra={"job_name": job_name},
        )

    async def recheck(self, redis: Any) -> None:
        """Reads the counts of the partitions passed over (one HMGET per name:
        :func:`counters_again`, as the reaper's): one a counter again (or absent) is served
        again, logged and forgotten. Never raises (a failed read: the next one tells)."""
        self.note(await counters_again(redis, self._count_of, list(self.names)), {})

    def _count_of(self, key: tuple[str, str]) -> tuple[str, str]:
        """The hash and the field of partition ``key``'s count."""
        name, part = key
        return self.keys.partitions_running(name), part


class SkippedKeys(SkippedNames[str]):
    """The names a pool's fetches skip because one of their own keys (queue, limits' keys, idle
    set: lua/lib/fetchcheck.lua) holds another type (name -> that key), logged once per key:
    a name skipped for another key (the first repaired, fetch.lua names one a call) is logged
    again, naming it."""

    def note(self, fetched: Iterable[str], skipped: Mapping[str, str]) -> None:
        self.moved([name for name, key in skipped.items() if self.names.get(name, key) != key])
        super().note(fetched, skipped)

    def log_skipped(self, name: str, value: str) -> None:
        log.error(
            "job name %s is not fetched: its key %s holds another type (written by hand or a "
            "bad restore); repair it: %s; an acknowledgement of its jobs that needs the key is "
            "parked until then (see docs/reliability.md)",
            name,
            value,
            own_key_repair(value),
            extra={"job_name": name},
        )

    def log_served(self, name: str) -> None:
        log.warning("job name %s: its keys are of their types again: served", name)


class FetchSkips:
    """What a pool's fetches leave alone, each logged once while so: the names skipped for
    their running count (``names``) or a key of another type (``keyed``), the partitions
    passed over (``parts``)."""

    def __init__(self, keys: Keys) -> None:
        self.names = SkippedNames[str](keys.running)
        self.keyed = SkippedKeys(keys.running)
        self.parts = SkippedParts(keys)

    def note(self, got: FetchResult, fetched: Iterable[str]) -> None:
        """A fetch of the names ``fetched`` answered ``got``."""
        fetched = list(fetched)
        self.names.moved(got.skipped_keys)  # (a reason moved: the other's line, none served)
        self.keyed.moved(got.skipped)
        self.names.note(fetched, got.skipped)
        self.keyed.note(fetched, got.skipped_keys)
        if got.skipped_parts:  # (served again: recheck)
            self.parts.note((), got.skipped_parts)

    async def recheck(self, redis: Any) -> None:
        """The partitions passed over served again when their count is a counter again
        (:meth:`SkippedParts.recheck`)."""
        if self.parts.names:
            await self.parts.recheck(redis)
