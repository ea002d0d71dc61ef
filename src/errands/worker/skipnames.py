"""The job names a fetch skipped because their ``running`` count is not a counter (lua/fetch.lua:
written by hand, a bad restore; the count is left as it is, and none of the name's jobs is
fetched until it is repaired, while the pool's other names are served as usual).

A pool logs one error per such name, naming the key, the field and how to repair it, once while
the name stays skipped (a pool fetches many times a second), and logs when a fetch serves it
again. The reaper keeps the names its passes leave alone (lua/reap.lua) the same way, with its
own lines (worker/reaper.py: a subclass). Pure but for the log lines.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

__all__ = ["SkippedNames"]

log = logging.getLogger("errands.worker")


class SkippedNames:
    """The names left alone now (name -> the value of its count), each logged once: by a pool's
    fetches (these lines; :meth:`log_skipped` and :meth:`log_served` say it otherwise)."""

    def __init__(self, running_key: str) -> None:
        self.running_key = running_key
        self.names: dict[str, str] = {}

    def note(self, fetched: Iterable[str], skipped: Mapping[str, str]) -> None:
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

    def log_skipped(self, name: str, value: str) -> None:
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

    def log_served(self, name: str) -> None:
        """The line of a name served again."""
        log.warning("job name %s: its running count is a counter again: served", name)
