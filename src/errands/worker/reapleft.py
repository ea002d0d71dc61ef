"""What the reaper (worker/reaper.py) logs once while it lasts: the job names, and partitions,
whose in-progress entries its passes leave alone (lua/reap.lua: their running count is not a
counter), and the dead pools reap.lua refuses as a whole (a shared key of another type)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from ..store.keyrepair import repair_hint
from ..store.records import ReapRefused
from ..store.scripts import Scripts
from .skipnames import K, SkippedNames, counters_again

__all__ = ["LeftAlone", "Refused"]

log = logging.getLogger("errands.reaper")


def _some(pools: set[str], most: int = 10) -> str:
    """The first ``most`` of ``pools``, and how many more."""
    names = sorted(pools)
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return ", ".join(names[:most]) + more


# what a key of LeftAlone is: (its words, its job name, the hash and the field of its count)
Where = Callable[[K], tuple[str, str, str, str]]


class LeftAlone(SkippedNames[K]):
    """The job names, or (job name, partition)s, whose in-progress entries the reaper's passes
    leave alone (lua/reap.lua: their running count is not a counter), logged once each while
    they stay so (skipnames.py), in the reaper's words; ``where`` says which count a key's is,
    ``pools``: key -> the dead pools whose entries of it wait."""

    def __init__(self, where: Where[K]) -> None:
        super().__init__("")  # (where names the hash)
        self.where = where
        self.pools: dict[K, set[str]] = {}

    async def note_pass(self, redis: Any, unfit: Mapping[K, tuple[str, set[str]]]) -> None:
        """A pass left the entries of ``unfit`` alone (key -> its count's value, the dead pools
        whose entries of it wait); a key left alone before and not by this pass is reaped again
        once its count reads a counter (skipnames.counters_again: a pass does not visit every
        held pool)."""
        if unfit or self.names:
            self.pools = {key: pools for key, (_, pools) in unfit.items()}
            earlier = [key for key in self.names if key not in unfit]
            repaired = await counters_again(redis, self._count_of, earlier)
            self.note(repaired, {key: value for key, (value, _) in unfit.items()})

    def _count_of(self, key: K) -> tuple[str, str]:
        """The hash and the field of ``key``'s count."""
        _, _, hash_key, field = self.where(key)
        return hash_key, field

    def log_skipped(self, name: K, value: str) -> None:
        what, job_name, key, field = self.where(name)
        log.error(
            "reaper: the in-progress entries of %s in dead pools %s are not reaped: its running "
            "count (field %s of hash %s) holds %r, not a counter; they wait until it is "
            "repaired (HSET %s %s <n>, see docs/reliability.md)",
            what,
            _some(self.pools[name]),
            field,
            key,
            value,
            key,
            field,
            extra={"job_name": job_name},
        )

    def log_served(self, name: K) -> None:
        log.warning("reaper: %s: its running count is a counter again", self.where(name)[0])


class Refused(SkippedNames[str]):
    """The dead pools reap.lua refuses as a whole (pool id -> the reason), logged once while the
    same reason lasts (skipnames.py), with the key's repair (store/keyrepair.py); a line when a
    pass visits one and no longer refuses it (reaped, or alive) or finds it no dead pool any
    more (Reaper._no_longer_dead); not when only not listed (held: reap.lua set its score ahead)."""

    def __init__(self) -> None:
        super().__init__("")  # (the reason names the key)
        self.hints: dict[str, str] = {}  # pool id -> the repair of its new reason, to log

    async def hint(self, pool_id: str, exc: ReapRefused, scripts: Scripts) -> None:
        """``pool_id`` was refused for ``exc``: a new reason is logged (its repair read now)."""
        if self.names.get(pool_id) != str(exc):
            self.names.pop(pool_id, None)
            self.hints[pool_id] = await repair_hint(scripts.redis, scripts.keys, exc)

    def log_skipped(self, name: str, value: str) -> None:
        log.error("reaper: pool %s not reaped: %s%s", name, value, self.hints.pop(name, ""))

    def log_served(self, name: str) -> None:
        log.warning("reaper: pool %s is no longer refused (reaped, or alive)", name)
