"""Enqueues confirmed by replicas: each script call is followed by ``WAIT`` on the same
connection, so a job the caller saw stored survives the failover of its master."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.exceptions import NoScriptError

from ..errors import NotReplicatedError
from .keys import Keys
from .scripts import Arg, Scripts
from .topology import describe_client, on_node_of

__all__ = ["ReplicatedScripts"]


class ReplicatedScripts(Scripts):
    """Scripts whose every call returns only once ``replicas`` replicas have its writes, or
    raises :class:`NotReplicatedError` after ``timeout`` seconds (the writes stay applied)."""

    def __init__(self, redis: Any, keys: Keys, replicas: int, timeout: float) -> None:
        super().__init__(redis, keys)
        if replicas < 1:
            raise ValueError("replicas must be >= 1")
        self.replicas = replicas
        self.timeout_ms = max(1, int(timeout * 1000))

    async def _call(self, name: str, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        script = self._s[name]
        # WAIT counts the writes of its own connection: a pipeline keeps both on one (on a
        # cluster: on the connection to the node holding the namespace's slot)
        node = on_node_of(self.redis, keys[0])
        for attempt in range(2):
            async with self.redis.pipeline(transaction=False) as pipe:
                # (a cluster pipeline blocks .evalsha(): the raw command routes by its keys)
                pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
                pipe.execute_command("WAIT", self.replicas, self.timeout_ms, **node)
                try:
                    result, acked = await pipe.execute()
                except NoScriptError:
                    if attempt:
                        raise
                    script.sha = await self.redis.script_load(script.script)
                    continue
            if int(acked) < self.replicas:
                raise NotReplicatedError(
                    f"{name} on {describe_client(self.redis)}: {acked} of {self.replicas} "
                    f"replicas confirmed within {self.timeout_ms} ms"
                )
            return result
        raise AssertionError("unreachable")  # pragma: no cover
