"""The workflow scripts (``store/lua/wf_*.lua``, sharing ``lua/lib/workflows.lua``), bound to a
client and namespace."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..store.keyrepair import run_key_repair
from ..store.keys import Keys
from ..store.scripts import lua_source

__all__ = ["Member", "WorkflowScripts", "run_keys"]

log = logging.getLogger("errands.workflows")

Arg = str | bytes | int | float
HOLD_MS = 30_000  # wf_cascade.lua's WF_HOLD: a held run's work items set aside for that long
PARTS = ("open", "in", "out", "nodes", "env", "res")


def run_keys(keys: Keys, run_id: str) -> list[str]:
    """The run's hash, then its open set, edges (in, out), nodes, envelopes, outcomes."""
    return [keys.workflow(run_id), *(keys.workflow(run_id, p) for p in PARTS)]


@dataclass(frozen=True, slots=True)
class Member:
    """One member as stored: ready at once (no dependency) or waiting in the run."""

    node: str
    name: str
    ready: bool
    priority: int
    envelope: bytes
    spec: bytes


class WorkflowScripts:
    def __init__(self, redis: Any, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._s = {
            name: redis.register_script(lua_source(name))
            for name in ("wf_enqueue", "wf_cancel", "wf_add", "wf_trim", "wf_cascade")
        }
        self.held: dict[str, str] = {}  # run -> its key of another type, logged (wf_cascade)

    async def enqueue(
        self,
        run_id: str,
        name: str,
        linger_ms: int,
        members: Sequence[Member],
        edges: Sequence[tuple[str, str]],
        callbacks: Sequence[tuple[str, bytes, bytes]],
    ) -> bool:
        """Store a run; False when it exists already, or the job id of one of its members or
        callbacks is taken (stored, or ended recently: wf_enqueue.lua): nothing stored."""
        k = self.keys
        keys = [k.jobs, k.priorities, k.seq, k.names, k.idle, k.workflow_of]
        keys += [*run_keys(k, run_id), k.ended]
        keys += (k.queue(n) for n in sorted({m.name for m in members if m.ready}))
        args: list[Arg] = [run_id, name, linger_ms, len(members), len(edges), len(callbacks)]
        for m in members:
            args += (m.node, m.name, 1 if m.ready else 0, m.priority, m.envelope, m.spec)
        for parent, child in edges:
            args += (parent, child)
        for kind, envelope, spec in callbacks:
            args += (kind, envelope, spec)
        return bool(await self._s["wf_enqueue"](keys=keys, args=args))

    async def cancel(self, run_id: str, waiting: Sequence[str], call: str = "") -> bool:
        """Mark the run cancelled and end the ``waiting`` members; False when it does not run.
        ``call``: a token of this call (letters and digits; a random one by default), by which
        its re-send answers as the first."""
        k = self.keys
        keys = [k.workflow_of, k.workflow(run_id), k.reply(call or os.urandom(8).hex())]
        return bool(await self._s["wf_cancel"](keys=keys, args=[run_id, *waiting]))

    async def trim(self, now_ms: int) -> int:
        """Runs whose linger is over leave the indexes; returns how many."""
        keys = [self.keys.workflows, self.keys.workflows_expiry]
        return int(await self._s["wf_trim"](keys=keys, args=[now_ms]))

    async def cascade(self) -> int:
        """Continue the walks of dependents left on the work list (a few hundred dependents per
        call); returns how many work items it took, 0 when none was left."""
        k = self.keys
        keys = [k.workflow_of, k.workflows_work]
        reply = await self._s["wf_cascade"](keys=keys, args=[])
        held = [_text(v) for v in reply[1:]]
        for run, key in zip(held[::2], held[1::2], strict=True):
            self._note_held(run, key)
        return int(reply[0])

    def _note_held(self, run: str, key: str) -> None:
        """wf_cascade.lua left run ``run`` alone, its ``key`` of another type: one error line
        per run and key (while this client lives; at most 1,000 runs remembered)."""
        if self.held.get(run) == key:
            return
        if len(self.held) >= 1000:
            self.held.clear()
        self.held[run] = key
        log.error(
            "workflow run %s: its walks are held (its dependents are not released nor ended, "
            "the run does not finish): its key %s holds another type (written by hand, a bad "
            "restore); repair it: %s; the other runs' walks proceed, this run's within %d s of "
            "its key's value restored",
            run,
            key,
            run_key_repair(key),
            HOLD_MS // 1000,
            extra={"workflow_run": run},
        )

    async def cascade_all(self) -> int:
        """Call ``cascade`` until the work list is empty; returns the work items taken."""
        total = 0
        while taken := await self.cascade():
            total += taken
        return total

    async def add(
        self, run_id: str, member: Member, after: Sequence[str], before: Sequence[str]
    ) -> str:
        """Add a member to a running run; returns "" or why it was refused."""
        k = self.keys
        keys = [k.workflow_of, *run_keys(k, run_id), k.jobs, k.ended]
        keys.append(k.done(f"{run_id}.{member.node}"))  # (its job id: members.py member_id)
        args: list[Arg] = [run_id, member.node, member.name, member.priority, member.envelope]
        args += (member.spec, len(after), *after, *before)
        reply = await self._s["wf_add"](keys=keys, args=args)
        return reply.decode() if isinstance(reply, bytes) else str(reply)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
