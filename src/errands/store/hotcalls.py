"""The worker's two calls per batch of jobs, fetch and ack, each on a connection held for it.

A worker pool calls the fetch script and the ack script for every batch of short jobs. On
redis-py's general path each call takes a connection from the pool and gives it back, encodes
every argument on its own (ten per acknowledged job) and, with a socket timeout set, runs a
task per send and a timeout scope per read: about a third of the worker's CPU per job with
short jobs. That CPU is what a machine whose cores are shared takes away first (bench/README.md,
``--busy``). As for the enqueue (store/pinned.py), each of the two scripts is sent on a
connection of the pool held for it (:class:`PinnedScript`: packed by hiredis, its replies read
by errands).

It only goes before the general path: on ``NoScriptError`` (a restarted or flushed server) or a
broken or timed-out connection, the call goes the general way, which loads the script,
reconnects and retries, as redis-py's own retry re-sends a call: both scripts are idempotent on
re-send, and the jobs of a fetch whose reply was lost are reclaimed by the worker
(worker/fetching.py). Not used on a Redis Cluster client.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, ReadOnlyError

from .connection import BROKEN
from .keys import Keys
from .pinned import PinnedScript
from .scripts import Arg, Scripts
from .topology import is_cluster

__all__ = ["HOT", "WorkerScripts"]

HOT = ("fetch", "ack")  # the scripts called once per batch of jobs


class WorkerScripts(Scripts):
    """The scripts of a worker pool: ``fetch`` and ``ack`` on connections of their own."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        super().__init__(redis, keys)
        hot = () if is_cluster(redis) else HOT
        self.pinned = {name: PinnedScript(redis, self.sha(name)) for name in hot}
        self.fallbacks = 0  # calls that went the general way after the pinned one (for tests)
        self.lost_reply = False  # a fetch sent pinned may have run unanswered (see _call)

    async def _call(self, name: str, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        pinned = self.pinned.get(name)
        if pinned is not None:
            try:
                return await pinned(keys, args)
            except NoScriptError:
                self.fallbacks += 1  # not run: the general path loads the script
            except ReadOnlyError:  # a replica now (a Sentinel failover): not run; the held
                self.fallbacks += 1  # connection goes, redis-py's path finds the new master
                await pinned.aclose()
            except BROKEN:
                self.fallbacks += 1  # the general path reconnects and retries; a fetch may
                self.lost_reply = self.lost_reply or name == "fetch"  # have run: its jobs
                await self._drop_others(pinned)  # are looked for (worker/fetching.py)
        return await super()._call(name, keys, args)

    async def drop_held(self) -> None:
        """The path to the server looks broken (the pool's wake-up subscription went silent,
        worker/notifier.py): the held connections no call is in flight on are given up and
        the pool's idle ones disconnected, before a call waits a socket timeout on one of them
        (a job a black hole held up would be acknowledged after two). A held connection with a
        call in flight is kept: the subscription's connection is another one, and if the path
        is dead that call's own timeout gives it up, taking the other with it (``_call``)."""
        for pinned in self.pinned.values():
            with contextlib.suppress(Exception):  # best effort: its calls still fall back
                await pinned.give_up(idle_only=True)
        with contextlib.suppress(Exception):  # best effort: the general path still retries
            await self.redis.connection_pool.disconnect(inuse_connections=False)

    async def _drop_others(self, broken: PinnedScript) -> None:
        """The held connection of ``broken`` broke or timed out: the pool's other connections
        went the same way (a black-holed or reset path). The other held connection is given
        up (its calls in flight go the general way too: both scripts are idempotent on
        re-send) and the idle ones are disconnected, so that they reconnect on their next use
        instead of a call waiting a second socket timeout on one of them: the acks of the jobs
        a black hole held up were sent, once those jobs ended, on the held ack connection that
        no call had used since, and waited for its timeout after the fetch's."""
        for pinned in self.pinned.values():
            if pinned is not broken:
                with contextlib.suppress(Exception):  # best effort: its calls still fall back
                    await pinned.give_up()
        with contextlib.suppress(Exception):  # best effort: the general path still retries
            await self.redis.connection_pool.disconnect(inuse_connections=False)

    async def aclose(self) -> None:
        """Give the held connections back to the pool."""
        for pinned in self.pinned.values():
            await pinned.aclose()
