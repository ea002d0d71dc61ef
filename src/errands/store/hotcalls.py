"""The worker's two calls per batch of jobs, fetch and ack, each on a connection held for it.

A worker pool calls the fetch script and the ack script for every batch of short jobs. On
redis-py's general path each call takes a connection from the pool and gives it back, encodes
every argument on its own (six per acknowledged job) and, with a socket timeout set, runs a
task per send and a timeout scope per read: about a third of the worker's CPU per job with
short jobs. That CPU is what a machine whose cores are shared takes away first (bench/README.md,
``--busy``). As for the enqueue (store/pinned.py), each of the two scripts is sent on a
connection of the pool held for it (:class:`PinnedScript`, its replies read by errands),
packed by the call's packer (store/fetchcall.py, store/ackcall.py: the parts that stay the same
from call to call packed once, not by hiredis argument by argument; ``pack_call`` of the call's
KEYS and ARGV lists for a call whose text is not ASCII).

It only goes before the general path: on ``NoScriptError`` (a restarted or flushed server) or a
broken or timed-out connection, the call goes the general way, which loads the script,
reconnects and retries, as redis-py's own retry re-sends a call: both scripts are idempotent on
re-send, and the jobs of a fetch whose reply was lost are reclaimed by the worker
(worker/fetching.py). Not used on a Redis Cluster client.

On Redis and Valkey >= 7 the two scripts are loaded as libraries of Redis Functions
(store/fnlib.py: ``FUNCTION LOAD`` once, sent on the held connection before its first call, under
that call's timeout: a path found dead there sends the call the general way at once) and the
held connection sends ``FCALL`` of them: a call then runs only the script's own lines, not its
libs' closures made anew (3-7 % of Redis' work a job, bench/hotpath_instr.py --functions). The
general path stays ``EVALSHA`` of the same Lua. An FCALL refused before it ran goes the general
way: its library missing (``Function not found``: a server restarted without persistence,
``FUNCTION FLUSH``; loaded again before the next call), the server over maxmemory (that call
only: EVALSHA runs a script until its first write that may grow memory, and an ack's first
writes free memory), FCALL denied by the ACL (from now on). A load refused for good (Redis < 7,
an ACL user without ``FUNCTION LOAD``) leaves the script on ``EVALSHA``, said in the log at
debug level; refused for now (over maxmemory, a replica, a broken path), it is tried again
LOAD_RETRY_S later.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import (
    NoPermissionError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
)

from .ackcall import AckPacker, ack_request
from .bulk import pack_call
from .connection import BROKEN
from .fetchcall import FetchCall, FetchPacker, fetch_request
from .fnlib import library, older_versions
from .keys import Keys
from .pinned import PinnedScript
from .scripts import Acked, Arg, Scripts
from .topology import is_cluster

__all__ = ["HOT", "WorkerScripts"]

HOT = ("fetch", "ack")  # the scripts called once per batch of jobs
LOAD_RETRY_S = 30.0  # after a load failed for a passing reason (OOM, READONLY, a broken path)
log = logging.getLogger("errands.pool")


class WorkerScripts(Scripts):
    """The scripts of a worker pool: ``fetch`` and ``ack`` on connections of their own."""

    def __init__(self, redis: Redis, keys: Keys, functions: bool = True) -> None:
        super().__init__(redis, keys)
        hot = () if is_cluster(redis) else HOT
        self.pinned = {name: PinnedScript(redis, self.sha(name)) for name in hot}
        self.fallbacks = 0  # calls that went the general way after the pinned one (for tests)
        self.lost_reply = False  # a fetch sent pinned may have run unanswered (see _hot)
        # the libraries (store/fnlib.py) to load before the next pinned call of their script;
        # functions False: EVALSHA only
        self.to_load = set(hot) if functions else set()
        self.loads = 0  # libraries loaded (or found there already: another worker's)
        self._load_after = dict.fromkeys(hot, 0.0)  # (monotonic) a failed load's next try
        self.now = time.monotonic  # (tests: another clock)
        self._pruned: set[str] = set()  # scripts whose other versions' libraries were deleted
        self._fetch_packer = FetchPacker(keys)
        self._ack_packer = AckPacker(keys)

    async def _fetch_call(self, call: FetchCall) -> Any:
        packer = self._fetch_packer
        return await self._hot(
            "fetch",
            lambda verb, fn: packer.pack(verb, fn, call),
            lambda: fetch_request(self.keys, call),
        )

    async def _ack_call(
        self, pool_id: str, done: Sequence[Acked], wake: bool, now_ms: int, history: bool
    ) -> Any:
        packer = self._ack_packer
        return await self._hot(
            "ack",
            lambda verb, fn: packer.pack(verb, fn, pool_id, done, wake, now_ms, history),
            lambda: ack_request(self.keys, pool_id, done, wake, now_ms, history),
        )

    async def _hot(
        self,
        name: str,
        pack: Callable[[bytes, bytes], bytes | None],
        request: Callable[[], tuple[list[str], list[Arg]]],
    ) -> Any:
        """A call of ``name`` on its held connection, packed by ``pack`` (its packer's, else
        ``pack_call`` of its lists); the general path (``request``: its KEYS and ARGV) when it
        has none or the held one did not run it."""
        pinned = self.pinned.get(name)
        if pinned is not None:
            due = name in self.to_load and self.now() >= self._load_after[name]
            if due and not await self._load(name, pinned):  # the held connection broke or
                self.fallbacks += 1  # timed out loading (a dead path, found in the call's own
                await self._drop_others(pinned)  # timeout): the call goes the general way
                return await self._call(name, *request())
            sent = pinned.function  # (another call in flight may find it gone first)
            try:
                return await pinned.call_packed(
                    lambda verb, fn: pack(verb, fn) or pack_call(fn, *request(), verb)
                )
            except NoScriptError:
                self.fallbacks += 1  # not run: the general path loads the script
            except ReadOnlyError:  # a replica now (a Sentinel failover): not run; the held
                self.fallbacks += 1  # connection goes, redis-py's path finds the new master
                await pinned.aclose()
            except BROKEN:
                self.fallbacks += 1  # the general path reconnects and retries; a fetch may
                self.lost_reply = self.lost_reply or name == "fetch"  # have run: its jobs
                await self._drop_others(pinned)  # are looked for (worker/fetching.py)
            except ResponseError as exc:
                if sent is None or not _refused(exc):
                    raise  # (the script's own error, as on the general path)
                self.fallbacks += 1  # not run: the general path's EVALSHA
                self._refusal(name, pinned, sent, exc)
        return await self._call(name, *request())

    def _refusal(self, name: str, pinned: PinnedScript, sent: bytes, exc: ResponseError) -> None:
        """An FCALL of ``sent`` refused before it ran (``_refused``), which its call sends by
        EVALSHA now. Over maxmemory (OOM): only that call; EVALSHA runs a script until its first
        write that may grow memory, so an ack whose first write deletes runs and frees memory,
        where a function without flags is refused as a whole. FCALL denied by the ACL: EVALSHA
        from now on; the function gone (a restart, ``FUNCTION FLUSH``): loaded before the next
        call (once, though several calls in flight found it gone)."""
        if isinstance(exc, OutOfMemoryError) or pinned.function != sent:
            return
        pinned.function = None
        if isinstance(exc, NoPermissionError):
            self._off(name, exc)
        else:
            self.to_load.add(name)

    async def _load(self, name: str, pinned: PinnedScript) -> bool:
        """Load the library of ``name`` (store/fnlib.py) and have ``pinned`` call it. A refusal
        for good (Redis < 7, the ACL) leaves it on EVALSHA; any other failure (over maxmemory,
        a replica, a broken path) is tried again LOAD_RETRY_S later, the calls on EVALSHA
        meanwhile. Sent on ``pinned``'s held connection, under the socket timeout of the call it
        goes before and without redis-py's retries: False if that connection broke or timed out
        (the call does not wait a second timeout on it). Never raises but for a cancellation."""
        lib = library(name)
        try:
            await pinned.send(_packed(b"FUNCTION", b"LOAD", lib.text.encode()))
        except BaseException as exc:
            if isinstance(exc, ResponseError) and "already exists" in str(exc):
                pass  # (another pool's: loaded)
            elif not isinstance(exc, Exception):  # (cancelled: the next call loads it)
                raise
            elif _for_good(exc):
                self.to_load.discard(name)
                self._off(name, exc)
                return True
            else:
                self._load_after[name] = self.now() + LOAD_RETRY_S
                log.debug("errands: %s on EVALSHA for now (library not loaded: %s)", name, exc)
                return not isinstance(exc, BROKEN)
        self.to_load.discard(name)
        self.loads += 1
        pinned.function = lib.name.encode()
        if name not in self._pruned:
            self._pruned.add(name)
            await self._prune(name)
        return True

    async def _prune(self, name: str) -> None:
        """At the first load of a pool's life, delete the libraries of ``name`` that another
        version of errands loaded (a few hundred KB each, else kept for good, one more at each
        upgrade). A pool of that version still running (a rolling deploy) finds its function
        gone at its next call, which runs by EVALSHA, and loads it again, deleting nothing (its
        first load was done): one reload a pool for each pool started. Best effort: a user that
        may not list or delete functions leaves them there."""
        try:
            listed = await self.redis.function_list(f"errands_{name}_*")
            names = [_library_name(lib) for lib in listed]
            for old in older_versions(name, names):
                await self.redis.function_delete(old)
                log.debug("errands: deleted library %s (another version of errands')", old)
        except Exception as exc:  # (a cancellation goes through)
            log.debug("errands: libraries of %s not pruned: %s", name, exc)

    def _off(self, name: str, exc: BaseException) -> None:
        log.debug("errands: %s stays on EVALSHA (Redis Functions not usable: %s)", name, exc)

    async def drop_held(self) -> None:
        """The path to the server looks broken (the pool's wake-up subscription went silent,
        worker/notifier.py): the held connections no call is in flight on are given up and
        the pool's idle ones disconnected, before a call waits a socket timeout on one of them
        (a job a black hole held up would be acknowledged after two). A held connection with a
        call in flight is kept: the subscription's connection is another one, and if the path
        is dead that call's own timeout gives it up, taking the other with it (``_hot``)."""
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


def _refused(exc: ResponseError) -> bool:
    """Whether an error reply to an ``FCALL`` means it did not run: its function is missing
    (a restart, ``FUNCTION FLUSH``), the user may not call functions, or the server is over
    maxmemory (a function without flags is refused then, and only then: none of ours raises
    OOM once it runs)."""
    return isinstance(exc, NoPermissionError | OutOfMemoryError) or "Function not found" in str(exc)


def _for_good(exc: Exception) -> bool:
    """Whether a ``FUNCTION LOAD`` refused with ``exc`` would be refused again: the user may
    not load functions, the server has none (Redis < 7: an unknown command), or it does not
    take this library (a Lua it does not compile or register)."""
    text = str(exc).lower()
    permanent = ("unknown command", "unknown subcommand", "error compiling", "error registering")
    return isinstance(exc, NoPermissionError) or any(what in text for what in permanent)


def _packed(*parts: bytes) -> bytes:
    """A command of ``parts`` in the Redis protocol."""
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


def _library_name(entry: Any) -> str:
    """The name of a library from its entry in FUNCTION LIST's reply (field, value, ... or, in
    RESP3, a map)."""
    pairs = entry.items() if isinstance(entry, dict) else zip(entry[::2], entry[1::2], strict=True)
    return _text({_text(k): v for k, v in pairs}["library_name"])


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
