"""Storing a workflow run: every member and callback built (through the Enqueuer's
middleware) and checked before one script stores them all."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any, Protocol, cast

from ..backoff import RetryOptions
from ..errors import WorkflowError
from ..job import Job
from ..store.keys import check_job_id
from .graph import MAX_SIZE, Callback, Node, Workflow, check_linger, check_name, check_nodes
from .members import member_id, member_row, spec_json
from .run import WorkflowRun
from .store import WorkflowScripts

__all__ = ["EnqueuerFactory", "WorkflowEnqueue", "check_size", "store_workflow"]


class _Enqueuer(Protocol):
    """What ``store_workflow`` needs of an Enqueuer."""

    redis: Any
    keys: Any

    def _build(
        self,
        name: str,
        args: Mapping[str, Any] | None,
        *,
        priority: int = ...,
        retry: RetryOptions | None = ...,
    ) -> Job: ...

    async def _through_middleware(self, job: Job) -> Job | None: ...

    def _encode(self, job: Job) -> bytes: ...

    async def _check_served(self, names: Iterable[str]) -> None: ...

    async def _call(self, coro: Any) -> Any: ...


class EnqueuerFactory:
    """Members built as ``Enqueuer.enqueue`` builds a job: checked, through its middleware
    (one that drops a member fails the whole workflow), size-checked."""

    def __init__(self, enqueuer: _Enqueuer) -> None:
        self.enqueuer = enqueuer

    async def member_job(self, run_id: str, node: Node | Callback, job_id: str) -> Job:
        e = self.enqueuer
        job = e._build(node.name, node.args, priority=node.priority, retry=node.retry)
        job.id = job_id
        job._wf = (run_id, node.id if isinstance(node, Node) else "")
        job.partition = node.partition if isinstance(node, Node) else None
        stored = await e._through_middleware(job)
        if stored is None:
            raise WorkflowError(f"an enqueue middleware dropped member {job_id}: nothing stored")
        return stored

    def encode(self, job: Job) -> bytes:
        return self.enqueuer._encode(job)


async def store_workflow(enqueuer: _Enqueuer, wf: Workflow) -> WorkflowRun:
    """Validate ``wf`` and store it as one run, in one script: all or nothing."""
    run_id = check_job_id(wf.id) if wf.id is not None else uuid.uuid4().hex
    linger = check_linger(wf.linger)  # (and the name: both may have been set since)
    name = check_name(wf.name)
    check_nodes(wf.nodes)  # (Workflow(nodes=...) keyed otherwise than by id: before its size)
    check_size(wf)
    order = wf.ordered()
    factory = EnqueuerFactory(enqueuer)
    members = []
    for node in order:
        job = await factory.member_job(run_id, node, member_id(run_id, node.id))
        members.append(member_row(node, job, ready=not node.after, envelope=factory.encode(job)))
    callbacks = []
    for kind, cb in sorted(wf.callbacks.items()):
        job = await factory.member_job(run_id, cb, f"{run_id}!{kind}")
        callbacks.append((kind, factory.encode(job), spec_json(cb)))
    await enqueuer._check_served(
        {m.name for m in members} | {c.name for c in wf.callbacks.values()}
    )
    scripts = WorkflowScripts(enqueuer.redis, enqueuer.keys)
    linger_ms = max(1, int(linger * 1000))
    stored = await enqueuer._call(
        scripts.enqueue(run_id, name, linger_ms, members, wf.edges(), callbacks)
    )
    run = WorkflowRun(enqueuer.redis, enqueuer.keys, run_id, factory)
    run.existed = not stored
    return run


def check_size(wf: Workflow) -> None:
    """A run of at most ``MAX_SIZE`` members, dependency edges and callbacks in all: one script
    stores it, blocking Redis meanwhile (wf_enqueue.lua refuses a larger one too)."""
    n, e, c = len(wf.nodes), sum(len(node.after) for node in wf.nodes.values()), len(wf.callbacks)
    if n + e + c > MAX_SIZE:
        raise WorkflowError(
            f"workflow {wf.name!r} has {n} members, {e} dependency edges and {c} callbacks: "
            f"{n + e + c} in all, more than the {MAX_SIZE:,} one run may hold (MAX_SIZE: "
            "one script stores a run; see docs/workflows.md). Nothing was stored."
        )


class WorkflowEnqueue:
    """The Enqueuer's ``enqueue_workflow`` (a base class of ``Enqueuer``)."""

    async def enqueue_workflow(self, workflow: Workflow) -> WorkflowRun:
        """Store every member and callback of ``workflow`` in one round trip (all or nothing)
        and start the members without dependencies; returns the run. A cycle or an unknown
        dependency raises ``WorkflowError`` before anything is stored. With ``Workflow(id=...)``
        the call is idempotent: a run with that id stored (or lingering) is left as it is, and
        so is one whose members' or callbacks' job ids are still taken (stored, or ended
        recently, as ``enqueue`` refuses a job id): nothing is stored, the run returned says
        ``existed`` (also when the call is its own re-send, unlike a Job: docs/workflows.md)
        and may be gone. More than ``MAX_SIZE`` (50,000) members,
        dependency edges and callbacks in all raise ``WorkflowError`` before anything is
        stored."""
        return await store_workflow(cast(_Enqueuer, self), workflow)
