"""The job names whose acknowledgements ack.lua leaves alone as unfit because one of the name's own
keys holds another type (its history, its queue, a key of its partitions: lua/lib/ackparts.lua;
written by hand, a bad restore): their jobs are parked (worker/acker.py) while the other names'
jobs are acknowledged. The reply says which jobs, not why: for the names of those jobs, the
types of their keys are read (one pipeline of TYPEs, on this error path only), and one error is
logged per name naming the key, its type and its repair, once while it stays so (again when
another key of the name is the one), and a warning once the name's acks go through again."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from ..store.keys import Keys
from ..store.records import Acked

__all__ = ["NameKeys"]

log = logging.getLogger("errands.worker")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class NameKeys:
    """The names logged for a key of another type (name -> that key)."""

    def __init__(self, redis: Any, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self.logged: dict[str, str] = {}

    def own_keys(self, name: str) -> list[tuple[str, str]]:
        """The keys of ``name`` an acknowledgement writes, with the type each must have, in the
        order ack.lua reads them."""
        k = self.keys
        return [
            (k.history_of(name), "zset"),
            (k.queue(name), "zset"),
            (k.partitions_running(name), "hash"),
            (k.partition_queue(name), "zset"),
            (k.partitions_ready(name), "zset"),
        ]

    async def wrong(self, names: Iterable[str]) -> dict[str, tuple[str, str]] | None:
        """name -> (its first key of another type, that type) of ``names``; None when the
        types cannot be read (Redis away: the next note tells)."""
        asked = [(name, key, want) for name in names for key, want in self.own_keys(name)]
        try:
            pipe = self.redis.pipeline(transaction=False)
            for _, key, _ in asked:
                pipe.type(key)
            kinds = await pipe.execute()
        except Exception as exc:  # (a read for the log only: the acker goes on)
            log.debug("reading the types of the job names' keys failed (%r)", exc)
            return None
        found: dict[str, tuple[str, str]] = {}
        for (name, key, want), kind in zip(asked, kinds, strict=True):
            kind = _text(kind)
            if name not in found and kind not in (want, "none"):
                found[name] = (key, kind)
        return found

    async def note(self, batch: Iterable[Acked], unfit: Iterable[str]) -> None:
        """An ack call of ``batch`` left the ids ``unfit`` alone: the names of those with a key
        of another type logged (once while so), the names logged before whose acks of the batch
        went through (or whose keys are of their types again) logged as repaired. Never raises."""
        left = set(unfit)
        names = {a.name for a in batch}
        held = {a.name for a in batch if a.id in left}
        wrong = await self.wrong(sorted(held)) if held else {}
        if wrong is None:
            return
        for name, (key, kind) in wrong.items():
            if self.logged.get(name) != key:
                self.logged[name] = key
                log.error(
                    "job name %s: its jobs' acknowledgements are left alone (parked, sent again "
                    "about once a minute): its key %s is a %s, not a %s; repair it: keep a copy "
                    "(RENAME %s <elsewhere>), or DEL %s; the other job names' jobs are "
                    "acknowledged meanwhile (see docs/reliability.md)",
                    name,
                    key,
                    kind,
                    dict(self.own_keys(name))[key],
                    key,
                    key,
                    extra={"job_name": name},
                )
        for name in [n for n in self.logged if n in names and n not in wrong]:
            del self.logged[name]
            log.warning(
                "job name %s: its keys are of their types again: its jobs are acknowledged",
                name,
                extra={"job_name": name},
            )
