"""The job names whose acknowledgements ack.lua leaves alone as unfit because one of the name's own
keys holds another type (its history, its queue, a key of its partitions: lua/lib/ackparts.lua;
written by hand, a bad restore): their jobs are parked (worker/acker.py) while the other names'
jobs are acknowledged. The reply says which jobs, not why: for the names of those jobs, the
types of their keys are read (one pipeline of TYPEs, on this error path only), and one error is
logged per name naming the key, its type and its repair, once while it stays so (again when
another key of the name is the one), and a warning once the name's acks go through again."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from ..store.keyrepair import own_key_repair
from ..store.keys import Keys
from ..store.records import Acked

__all__ = ["KeysLeft", "NameKeys", "own_type"]

log = logging.getLogger("errands.worker")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class NameKeys:
    """The names logged for a key of another type (name -> that key)."""

    def __init__(self, redis: Any, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self.logged: dict[str, str] = {}
        self.checking: set[str] = set()  # names of unfit jobs whose keys' types are being read

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

    async def note(
        self, batch: Iterable[Acked], unfit: Iterable[str], refused: Iterable[str]
    ) -> set[str] | None:
        """An ack call of ``batch`` left the ids ``unfit`` alone, the fence refused ``refused``
        (taken back: nothing of them written, their keys unread): the names of the unfit ones
        with a key of another type logged (once while so), the names logged before one of whose
        jobs of the batch was acknowledged, or whose keys' types were read for an unfit job of
        it and found of their types, logged as repaired. Returns the
        names of the unfit jobs with a key of another type (their jobs need no line of their
        own), None when the types could not be read. Never raises."""
        batch = list(batch)
        left, taken = set(unfit), set(refused)
        held = {a.name for a in batch if a.id in left}
        acked = {a.name for a in batch if a.id not in left and a.id not in taken}
        self.checking = held  # (held from fetches meanwhile: Acker.held_names)
        try:
            wrong = await self.wrong(sorted(held)) if held else {}
        finally:
            self.checking = set()
        if wrong is None:
            return None
        for name, (key, kind) in wrong.items():
            if self.logged.get(name) != key:
                self.logged[name] = key
                log.error(
                    "job name %s: its jobs' acknowledgements are left alone (parked, sent again "
                    "about once a minute; its other jobs not fetched by this pool meanwhile): "
                    "its key %s is a %s, not a %s; repair it: %s; the other job names' jobs "
                    "are acknowledged meanwhile (see docs/reliability.md)",
                    name,
                    key,
                    kind,
                    dict(self.own_keys(name))[key],
                    own_key_repair(key),
                    extra={"job_name": name},
                )
        # repaired: a job of it acknowledged, or its keys' types read (a job of it unfit for
        # another reason too: a key of its workflow run) and found of their types again
        for name in [n for n in self.logged if n in acked | held and n not in wrong]:
            del self.logged[name]
            log.warning(
                "job name %s: its keys are of their types again: its jobs are acknowledged "
                "(and fetched)",
                name,
                extra={"job_name": name},
            )
        return set(wrong)


def own_type(keys: Keys, name: str, key: str) -> str:
    """The type ``key``, one of job name ``name``'s own keys, must have: its partitions running
    count is a hash, its queue, partition queue, partitions ready, history, scheduled and retry
    sets and idle pools are sorted sets."""
    return "hash" if key == keys.partitions_running(name) else "zset"


class KeysLeft:
    """The job names a script leaves alone, for one of their own keys holding another type,
    while it serves the others (lua/reap.lua: their dead pools' entries; lua/promote.lua: their
    due jobs): name -> that key, one error per name (again when another key of it is the one),
    naming the key, its type (one pipeline of TYPEs, on this path only) and its repair; and a
    warning once the key is of its type again (read for the names logged and not left alone by
    the last call: a reaper's pass does not visit every held pool). ``prefix`` opens each line
    ("reaper", "requeuer"), ``what`` says what is left alone ("its due jobs are not moved");
    ``scripts``' client and keys are read when a call left a name alone, not before."""

    def __init__(self, scripts: Any, logger: logging.Logger, prefix: str, what: str):
        self.scripts = scripts
        self.log = logger
        self.prefix = prefix
        self.what = what
        self.logged: dict[str, str] = {}

    async def note(self, left: Mapping[str, str], where: Mapping[str, str] | None = None) -> None:
        """The last call (or pass) left the names of ``left`` alone (name -> its key of another
        type; ``where``: name -> words naming where they wait, for the line). Never raises."""
        new = [(n, k) for n, k in left.items() if self.logged.get(n) != k]
        earlier = [(n, k) for n, k in self.logged.items() if n not in left]
        if not new and not earlier:
            return
        try:
            pipe = self.scripts.redis.pipeline(transaction=False)
            for _, key in new + earlier:
                pipe.type(key)
            kinds = [_text(kind) for kind in await pipe.execute()]
        except Exception as exc:  # (a read for the log only: the caller goes on)
            log.debug("reading the types of the job names' keys failed (%r)", exc)
            return
        for (name, key), kind in zip(new, kinds, strict=False):
            self.logged[name] = key
            self._left(name, key, kind, (where or {}).get(name, ""))
        for (name, key), kind in zip(earlier, kinds[len(new) :], strict=True):
            if kind in (own_type(self.scripts.keys, name, key), "none"):
                del self.logged[name]
                self.log.warning(
                    "%s: job name %s: its keys are of their types again: served again",
                    self.prefix,
                    name,
                    extra={"job_name": name},
                )

    def _left(self, name: str, key: str, kind: str, where: str) -> None:
        self.log.error(
            "%s: job name %s: %s%s: its key %s is a %s, not a %s; repair it: %s; they wait "
            "until then, the other job names are served meanwhile (see docs/reliability.md)",
            self.prefix,
            name,
            self.what,
            f" ({where})" if where else "",
            key,
            kind,
            own_type(self.scripts.keys, name, key),
            own_key_repair(key),
            extra={"job_name": name},
        )
