"""The wrappers of the scripts behind the admin actions (``Client``): move, cancel, destroy.
A mixin of :class:`~errands.store.scripts.Scripts`, which registers them."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from ..errors import DedupKeyHeldError, UniqueLockHeldError
from .keys import Keys

__all__ = ["ADMIN_SCRIPTS", "AdminScripts", "Arg"]

Arg = str | bytes | int | float
ADMIN_SCRIPTS = ("move", "cancel", "request_cancel", "destroy", "update_job", "quiet_request")


class AdminScripts:
    """Mixin of Scripts."""

    keys: Keys
    redis: Any

    async def _call(self, name: str, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        raise NotImplementedError  # (Scripts runs the registered script)

    async def aclose(self) -> None:
        """Give back the connections held for calls (none here; see store/hotcalls.py)."""

    async def move(
        self,
        id: str,
        name: str,
        source: str,
        mode: str,
        due_ms: int = 0,
        envelope: bytes = b"",
        now_ms: int = 0,
        afresh: bool = True,
        expected: bytes = b"",
        call: str = "",
        unique: tuple[str, int] = ("", 0),
        dedup: tuple[str, str] = ("", ""),
    ) -> bool:
        """Move a waiting job out of ``source``: onto its queue, into its scheduled set, or
        delete it (mode ``queue``, ``schedule``, ``delete``; a deletion is recorded in the
        history of ``name`` at ``now_ms``). A new ``envelope`` replaces the stored one;
        ``afresh`` also drops the job's last error and recovery count; with ``expected`` (the
        envelope the new one was made from) nothing moves if the stored one differs. ``call``:
        a token of this call (letters and digits; a random one by default), by which its
        re-send answers as the first. ``unique``: the enqueue_unique digest a job put back to
        wait takes again, and that lock's expiry (ms; ``now_ms`` is the time now): when
        another live job holds it, nothing moves and UniqueLockHeldError is raised. ``dedup``:
        the mode letter (s d f r) and key (``<name>:<key>``) of the Dedup key it takes again:
        when another live job holds it, nothing moves and DedupKeyHeldError is raised (in mode
        r the job waits as the rerun of a started holder when no rerun waits: lua/move.lua)."""
        k = self.keys
        target = k.scheduled(name) if mode == "schedule" else k.queue(name)
        keys = [k.jobs, k.priorities, k.seq, k.idle, source, target, k.errors, k.recoveries]
        keys += (k.done(id), k.unique, k.unique_of_job, k.unique_expiry, k.checkins)
        keys += (k.cancel_requests, k.attempts, k.ended, k.history_data, k.history_of(name))
        keys += (k.listening, k.checkpoints, k.dedup, k.dedup_of_job)
        keys += (k.workflow_of, k.dedup_next, k.dedup_reruns, k.partitions)
        keys += (k.partition_queue(name), k.partitions_ready(name))
        keys += (k.reply(call or os.urandom(8).hex()), k.idle_for(name), k.queue(name))
        keys.append(k.partitions_waiting(name))
        args: list[Arg] = [id, mode, due_ms, envelope, k.wake_channel, k.events_channel, name]
        args += (now_ms, "1" if afresh else "0", expected, *unique, *dedup)
        moved = int(await self._call("move", keys, args))
        if moved == -2:  # (read for the message only)
            owner, rerun = await self.redis.hget(k.dedup, dedup[1]), None
            if dedup[0] == "r":  # (rerun_latest: refused while the owner waits or a rerun does)
                rerun = await self.redis.hget(k.dedup_next, dedup[1])
            waits = f" and its rerun ({_text(rerun)}) waits already" if rerun else ""
            raise DedupKeyHeldError(
                f"job {id} not moved: another job ({_text(owner)}) holds its dedup key "
                f"{dedup[1].partition(':')[2]!r}{waits}; two jobs never hold one key",
                "" if owner is None else _text(owner),
            )
        if moved == -1:
            holder = await self.redis.hget(k.unique, unique[0])  # (for the message only)
            raise UniqueLockHeldError(
                f"job {id} not moved: another job ({_text(holder)}) holds its enqueue_unique "
                "lock (of the same arguments, or the same key=); two jobs never wait with one lock"
            )
        return bool(moved)

    async def cancel(self, id: str, name: str, now_ms: int, ttl_ms: int, call: str = "") -> str:
        """Cancel a job (see lua/cancel.lua); ``call``: a token of this call (letters and
        digits; a random one by default), by which a re-sent call knows the job it cancelled
        or signalled itself and answers as the first (a token is for one call: given again for
        another job, that call answers as the first did and does nothing)."""
        k = self.keys
        call = call or os.urandom(8).hex()
        keys = [k.jobs, k.queue(name), k.scheduled(name), k.retry(name), k.cancelled, k.dead]
        keys += (k.done(id), k.unique, k.unique_of_job, k.unique_expiry, k.listening)
        keys += (k.cancel_requests, k.attempts, k.recoveries, k.dedup, k.dedup_of_job)
        keys += (k.workflow_of, k.dedup_next, k.dedup_reruns, k.seq, k.priorities, k.idle)
        keys += (k.history_data, k.history_of(name), k.names, k.partitions)
        keys += (k.partition_queue(name), k.partitions_ready(name), k.reply(call))
        keys.append(k.partitions_waiting(name))
        args: list[Arg] = [id, now_ms, ttl_ms, k.control_channel, k.events_channel, name]
        args += (k.wake_channel, call)
        result = await self._call("cancel", keys, args)
        return result.decode() if isinstance(result, bytes) else str(result)

    async def destroy(
        self, id: str, name: str, attempts: int, edits: int = 0, call: str = ""
    ) -> str:
        """Remove every trace of a job (see lua/destroy.lua): ``destroyed``, ``running`` (its
        pool was asked to drop it) or ``unknown``; ``call``: a token of this call, by which its
        re-send answers as the first."""
        k = self.keys
        keys = [k.jobs, k.priorities, k.errors, k.recoveries, k.checkins, k.cancel_requests]
        keys += (k.attempts, k.unique_of_job, k.unique, k.unique_expiry, k.ended)
        keys += (k.queue(name), k.scheduled(name), k.retry(name), k.dead, k.cancelled)
        keys += (k.done(id), k.history, k.history_data, k.history_of(name), k.listening)
        keys += (k.checkpoints, k.dedup, k.dedup_of_job, k.workflow_of)
        keys += (k.dedup_next, k.dedup_reruns, k.seq, k.idle, k.partitions)
        keys += (k.partition_queue(name), k.partitions_ready(name), k.partitions_waiting(name))
        if call:
            keys.append(k.reply(call))
        args: list[Arg] = [id, name, k.control_channel, k.events_channel, attempts]
        args += (k.wake_channel, edits)
        result = await self._call("destroy", keys, args)
        return result.decode() if isinstance(result, bytes) else str(result)

    async def update_job(
        self, id: str, name: str, source: str, old: bytes, new: bytes, priority: int | None,
        edit: int, record: bytes, now_ms: int, digests: tuple[str, str] = ("", ""),
    ) -> int:  # fmt: skip
        """Swap a waiting or dead job's envelope (and priority) if it is still in ``source``
        with envelope ``old``, recording the edit ``<id>:e<edit>`` in its history; a unique
        lock it holds on ``digests[0]`` moves to ``digests[1]``. 1 = edited, 0 = it moved or
        changed meanwhile, -1 = another job holds the lock of ``digests[1]``."""
        k = self.keys
        keys = [k.jobs, k.priorities, source, k.history_data, k.history_of(name)]
        keys += (k.partitions, k.seq, k.partition_queue(name), k.partitions_ready(name))
        keys += (k.unique, k.unique_of_job, k.unique_expiry)
        prio = "" if priority is None else priority
        queued = "1" if source == k.queue(name) else "0"
        args: list[Arg] = [id, old, new, prio, queued, f"{id}:e{edit}", record, now_ms, *digests]
        return int(await self._call("update_job", keys, args))

    async def request_cancel(self, id: str, kind: str) -> bool:
        """Ask the pool running ``id`` to cancel (``cancel``) or drop (``destroy``) it; False
        when no attempt of it runs."""
        k = self.keys
        keys = [k.attempts, k.cancel_requests]
        return bool(await self._call("request_cancel", keys, [id, kind, k.control_channel]))

    async def quiet_request(self, pool_id: str, request: str) -> int:
        """Ask a running pool to go ``quiet`` or ``resume`` (see lua/quiet_request.lua): 1 =
        recorded, 0 = nothing to change, -1 = no such pool registered."""
        k = self.keys
        keys = [k.pools, k.quiet_requests, k.pool_info(pool_id)]
        return int(await self._call("quiet_request", keys, [pool_id, request]))


def _text(value: bytes | str | None) -> str:
    if value is None:
        return "gone since"
    return value.decode(errors="replace") if isinstance(value, bytes) else value
