"""A stored workflow run: its status, its members' outcomes, cancelling it, growing it."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Never

import orjson

from ..errors import DependencyFailed, WorkflowError, WorkflowNotFoundError
from ..store.keys import Keys
from ..store.scripts import Scripts
from ..store.stored import stored_count, stored_text
from .graph import (
    MAX_SIZE,
    Node,
    NodeRef,
    Policy,
    check_member,
    check_node_id,
    check_node_partition,
    check_policy,
    node_refs,
    refuse_unsupported,
)
from .members import JobFactory, member_id, member_row
from .store import WorkflowScripts

__all__ = ["NodeState", "WorkflowRun", "WorkflowStatus"]

FINAL = ("succeeded", "failed", "cancelled")
CANCEL_TTL_MS = 86_400_000
BATCH = 500


def _text(raw: bytes | str) -> str:
    return stored_text(raw)


@dataclass(frozen=True)
class NodeState:
    """One member: ``state`` is ``waiting`` (for its dependencies), ``released`` (queued,
    running or retrying: see ``Client.job(job_id)``), ``succeeded``, ``failed`` or
    ``cancelled``; ``result`` / ``error`` once it ended. ``corrupt``: its stored spec or
    outcome is not what errands writes (its name then reads ``?``)."""

    id: str
    name: str
    job_id: str
    after: tuple[str, ...]
    state: str
    result: Any = None
    error: Any = None


@dataclass(frozen=True)
class WorkflowStatus:
    """A run as stored: ``status`` is ``running``, ``succeeded``, ``failed`` or ``cancelled``;
    times are Unix seconds (Redis clock); ``failed_node`` names the first member whose
    failure failed the run; ``callbacks`` the job name of each callback it has (kind
    ``on_success`` / ``on_failure``; job id ``<run id>!<kind>``)."""

    id: str
    name: str
    status: str
    created: float
    finished: float | None
    failed_node: str | None
    nodes: dict[str, NodeState] = field(default_factory=dict)
    callbacks: dict[str, str] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.status in FINAL

    def counts(self) -> dict[str, int]:
        """Members by state."""
        out: dict[str, int] = {}
        for node in self.nodes.values():
            out[node.state] = out.get(node.state, 0) + 1
        return out


def _object(raw: bytes | None) -> dict[str, Any] | None:
    """A stored JSON object; None when missing, not JSON or not an object (corrupt)."""
    try:
        value = orjson.loads(raw) if raw is not None else None
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _outcome(node: str, raw: bytes | None) -> tuple[str, Any, Any]:
    if raw is None:
        return "", None, None
    record = _object(raw)
    if record is None:
        return "corrupt", None, None  # (a record no script wrote: its member shown so)
    status = record.get("s")
    if status == "ok":
        return "succeeded", record.get("r"), None
    return str(status), None, record.get("e")


class WorkflowRun:
    """A handle on one run (``await enqueuer.enqueue_workflow(wf)`` returns it; inside a
    handler ``job.workflow``)."""

    def __init__(self, redis: Any, keys: Keys, id: str, factory: JobFactory | None = None) -> None:
        self.redis = redis
        self.keys = keys
        self.id = id
        # (enqueue_workflow) this call stored nothing: a run with the id was there, or one of
        # its members' or callbacks' job ids was taken
        self.existed = False
        self._factory = factory
        self._scripts = WorkflowScripts(redis, keys)

    def __repr__(self) -> str:
        return f"<WorkflowRun {self.id}>"

    def job_id(self, node: str) -> str:
        """The job id of member ``node``."""
        return f"{self.id}.{node}"

    def callback_job_id(self, kind: str) -> str:
        """The job id of the run's ``on_success`` or ``on_failure`` callback."""
        return f"{self.id}!{kind}"

    def _not_found(self) -> str:
        # the namespace named: a run looked up in another one (the CLI's default) is not found
        return f"no workflow run {self.id!r} in namespace {self.keys.namespace!r}"

    async def status(self) -> WorkflowStatus:
        """The run and every member's state; raises ``WorkflowNotFoundError`` for an unknown
        run or one whose linger is over."""
        k = self.keys
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(k.workflow(self.id))
            pipe.hgetall(k.workflow(self.id, "nodes"))
            pipe.hgetall(k.workflow(self.id, "res"))
            pipe.hkeys(k.workflow(self.id, "env"))
            meta, nodes, res, waiting = await pipe.execute()
        if not meta:
            raise WorkflowNotFoundError(self._not_found())
        m = {_text(a): _text(b) for a, b in meta.items()}
        held = {_text(n) for n in waiting}
        outcomes = {_text(n): r for n, r in res.items()}
        states: dict[str, NodeState] = {}
        callbacks: dict[str, str] = {}
        for raw_node, raw_spec in sorted(nodes.items()):
            node = _text(raw_node)
            spec = _object(raw_spec) or {}
            if node.startswith("!"):  # a callback: its job name ('?' for a spec no script wrote)
                callbacks[node[1:]] = spec["n"] if isinstance(spec.get("n"), str) else "?"
                continue
            state, result, error = _outcome(node, outcomes.get(node))
            if not state:
                state = "waiting" if node in held else "released"
            deps, name = spec.get("d"), spec.get("n")
            if not isinstance(name, str) or not isinstance(deps, list | None):
                name, deps, state = "?", [], "corrupt"  # (a spec no script wrote)
            after = tuple(str(d) for d in deps or ())
            states[node] = NodeState(node, name, self.job_id(node), after, state, result, error)
        finished = m.get("finished")
        return WorkflowStatus(
            self.id,
            m.get("name", ""),
            m.get("status", ""),
            stored_count(m.get("created")) / 1000,  # (corrupt: 0)
            stored_count(finished) / 1000 or None,
            m.get("failed"),
            states,
            callbacks,
        )

    async def wait(self, timeout: float | None = None, poll: float = 0.05) -> WorkflowStatus:
        """Wait until every member has ended; returns the final status. Raises
        ``TimeoutError`` after ``timeout`` seconds (the run goes on: wait again, or
        ``cancel()`` it), ``WorkflowNotFoundError`` for an unknown run."""
        status, scope = "", asyncio.timeout(timeout)
        try:
            async with scope:
                delay = poll
                while True:
                    meta = await self.redis.hget(self.keys.workflow(self.id), "status")
                    if meta is None:
                        raise WorkflowNotFoundError(self._not_found())
                    status = _text(meta)
                    if status in FINAL:
                        return await self.status()
                    await asyncio.sleep(delay)
                    delay = min(delay * 1.5, 0.5)
        except TimeoutError:
            if not scope.expired():  # (the caller's own deadline, or one of Redis's)
                raise
            state = f"it is {status}" if status else "its status not read in time"
            raise TimeoutError(
                f"waited {timeout:g}s for workflow run {self.id!r}: {state}"
            ) from None

    async def cancel(self) -> bool:
        """Cancel the run: members waiting for their dependencies never run, queued ones are
        cancelled, running ones are cancelled by their pools; no callback runs. False when the
        run is not running (finished, or unknown)."""
        k = self.keys
        if not await self._scripts.cancel(self.id, [], os.urandom(8).hex()):
            return False
        waiting = sorted(
            n
            for n in map(_text, await self.redis.hkeys(k.workflow(self.id, "env")))
            if not n.startswith("!")
        )
        for start in range(0, len(waiting), BATCH):
            await self._scripts.cancel(self.id, waiting[start : start + BATCH], os.urandom(8).hex())
        await self._scripts.cascade_all()  # their dependents, beyond what each call walked
        open_nodes = sorted(map(_text, await self.redis.smembers(k.workflow(self.id, "open"))))
        scripts = Scripts(self.redis, k)
        seconds, micros = await self.redis.time()
        now = int(seconds) * 1000 + int(micros) // 1000
        for start in range(0, len(open_nodes), BATCH):
            chunk = open_nodes[start : start + BATCH]
            specs = await self.redis.hmget(k.workflow(self.id, "nodes"), chunk)
            for node, raw in zip(chunk, specs, strict=True):
                if raw is not None:
                    name = orjson.loads(raw)["n"]
                    call = os.urandom(8).hex()  # (its re-send answers as the first)
                    await scripts.cancel(self.job_id(node), name, now, CANCEL_TTL_MS, call)
        await self._scripts.cascade_all()
        return True

    async def results(self) -> dict[str, Any]:
        """The outcome of every member that has ended: its return value, or a
        ``DependencyFailed`` naming how it ended. Raises ``WorkflowNotFoundError`` for an
        unknown run or one whose linger is over (a callback run or retried past it), which
        read as ``{}`` before: no member at all."""
        raw = await self.redis.hgetall(self.keys.workflow(self.id, "res"))
        if not raw and not await self.redis.exists(self.keys.workflow(self.id)):
            raise WorkflowNotFoundError(self._not_found())
        return {_text(n): _value(_text(n), r) for n, r in sorted(raw.items())}

    async def dependency_results(self, node: str) -> dict[str, Any]:
        """The outcomes of ``node``'s dependencies (of every member for a callback, node "")."""
        if not node:
            return await self.results()
        spec = await self.redis.hget(self.keys.workflow(self.id, "nodes"), node)
        if spec is None:
            raise WorkflowNotFoundError(f"no node {node!r} in workflow run {self.id!r}")
        deps = list(orjson.loads(spec).get("d") or ())
        if not deps:
            return {}
        raw = await self.redis.hmget(self.keys.workflow(self.id, "res"), deps)
        return {d: _value(d, r) for d, r in zip(deps, raw, strict=True) if r is not None}

    async def add(
        self,
        name: str,
        args: Mapping[str, Any] | None = None,
        *,
        after: Iterable[NodeRef] = (),
        before: Iterable[NodeRef] = (),
        on_dependency_failure: Policy = "fail",
        id: str | None = None,
        priority: int = 0,
        partition: str | None = None,
        **unsupported: Never,
    ) -> Node:
        """Add a member to this running run: it runs after the ``after`` nodes that have not
        ended yet, and each ``before`` node (which must still wait for its dependencies) also
        waits for it. Raises ``WorkflowError`` when the run no longer runs, a node does not fit
        (unknown, already there, no longer waiting) or the run would hold more than
        ``MAX_SIZE`` (50,000) members, dependency edges and callbacks in all, and for another
        keyword argument (``delay``, ``at``, ``dedup``, ...)."""
        accepts = "name, args, after, before, on_dependency_failure, id, priority, partition"
        refuse_unsupported(f"WorkflowRun.add({name!r})", unsupported, accepts)
        if self._factory is None:
            raise WorkflowError("this WorkflowRun cannot add members (no serializer bound)")
        node_id = check_node_id(id if id is not None else f"{name}#{_short_id()}")
        # (node ids: a callback's reserved '!' name is refused, so it never becomes a before node)
        values, priority = check_member(f"node {node_id!r}", name, args, priority, None)
        refs = node_refs(node_id, "after", after), node_refs(node_id, "before", before)
        deps = tuple(dict.fromkeys(check_node_id(str(a)) for a in refs[0]))
        befores = tuple(dict.fromkeys(check_node_id(str(b)) for b in refs[1]))
        policy = check_policy(on_dependency_failure)
        part = check_node_partition(node_id, partition)
        node = Node(node_id, name, values, deps, policy, priority, partition=part)
        if node_id in deps or node_id in befores or set(deps) & set(befores):
            raise WorkflowError(f"node {node_id!r}: a node cannot be both before and after it")
        if 1 + len(deps) + len(befores) > MAX_SIZE:  # (wf_add.lua: the run's own size too)
            raise WorkflowError(f"node {node_id!r}: more than {MAX_SIZE:,} after and before nodes")
        job = await self._factory.member_job(self.id, node, member_id(self.id, node_id))
        member = member_row(node, job, ready=False, envelope=self._factory.encode(job))
        why = await self._scripts.add(self.id, member, deps, befores)
        if why:
            raise WorkflowError(why)
        return node


def _short_id() -> str:
    return uuid.uuid4().hex[:8]


def _value(node: str, raw: bytes) -> Any:
    status, result, error = _outcome(node, raw)
    if status == "succeeded":
        return result
    return DependencyFailed(node, status, error)
