"""The Redis side of long work: the scripts of ``store/lua`` that only iterable jobs use, bound
to one client and namespace (cached per ``Scripts``: a pool builds them once)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from weakref import WeakKeyDictionary

from ..store.scripts import Scripts, lua_source

__all__ = ["LongworkScripts", "longwork_scripts"]

_NAMES = ("checkpoint",)


class LongworkScripts:
    """The checkpoint script (``lua/checkpoint.lua``) and the reads iterable jobs make."""

    def __init__(self, scripts: Scripts) -> None:
        self.redis = scripts.redis
        self.keys = scripts.keys
        self._s = {name: self.redis.register_script(lua_source(name)) for name in _NAMES}

    async def _call(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        return await self._s[name](keys=list(keys), args=list(args))

    async def load_checkpoint(self, job_id: str) -> bytes | None:
        """The last checkpoint of a job (JSON), None when it has none."""
        raw = await self.redis.hget(self.keys.checkpoints, job_id)
        return raw.encode() if isinstance(raw, str) else raw

    async def checkpoint(self, job_id: str, name: str, attempt: str, data: bytes) -> str | None:
        """Write a checkpoint for the attempt ``"<pool id>:<token>"``. Returns None when that
        attempt no longer runs the job (nothing written), else ``""``, or the kind of cancel
        request stored for the job (``"cancel"`` or ``"destroy"``)."""
        k = self.keys
        keys = [k.checkpoints, k.jobs, k.attempts, k.cancel_requests, k.listening]
        args = [job_id, attempt, data, k.events_channel, name]
        reply = await self._call("checkpoint", keys, args)
        if reply == 0:
            return None
        if isinstance(reply, bytes):
            return reply.decode()
        return reply if isinstance(reply, str) else ""


_cache: WeakKeyDictionary[Scripts, LongworkScripts] = WeakKeyDictionary()


def longwork_scripts(scripts: Scripts) -> LongworkScripts:
    """The long-work scripts on the client and namespace of ``scripts``."""
    found = _cache.get(scripts)
    if found is None:
        found = _cache[scripts] = LongworkScripts(scripts)
    return found
