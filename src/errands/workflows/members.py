"""Turning nodes into member jobs (their envelopes and stored specs)."""

from __future__ import annotations

from typing import Protocol

import orjson

from ..clock import Clock
from ..errors import WorkflowError
from ..handlers import check_priority
from ..job import Job
from ..serialization import Serializer
from ..store.keys import check_job_id, check_job_name
from .graph import Callback, Node
from .store import Member

__all__ = ["JobFactory", "PlainFactory", "member_id", "member_row", "spec_json"]


class JobFactory(Protocol):
    """Builds and encodes the jobs of a run (the Enqueuer, through its middleware; a worker,
    for members added by a running member)."""

    async def member_job(self, run_id: str, node: Node | Callback, job_id: str) -> Job: ...

    def encode(self, job: Job) -> bytes: ...


def member_id(run_id: str, node: str) -> str:
    job_id = f"{run_id}.{node}"
    try:
        return check_job_id(job_id)
    except ValueError:
        raise WorkflowError(
            f"member id {job_id!r} is too long: use a shorter run or node id"
        ) from None


def spec_json(node: Node | Callback) -> bytes:
    """What the scripts read of a node: job name, policy, priority, then dependencies last
    (lua/wf_add.lua appends to them in place)."""
    if isinstance(node, Callback):
        return orjson.dumps({"n": node.name, "p": node.priority})
    spec: dict[str, object] = {"n": node.name, "f": node.on_dependency_failure}
    spec["p"] = node.priority
    if node.partition is not None:  # hex: lib/workflows.lua reads it with a pattern
        spec["k"] = node.partition.encode().hex()
    return orjson.dumps({**spec, "d": list(node.after)})


def member_row(node: Node, job: Job, *, ready: bool, envelope: bytes) -> Member:
    return Member(node.id, node.name, ready, job.priority, envelope, spec_json(node))


class PlainFactory:
    """Members built without enqueue middleware (members added from inside a handler)."""

    def __init__(self, serializer: Serializer, clock: Clock) -> None:
        self.serializer = serializer
        self.clock = clock

    async def member_job(self, run_id: str, node: Node | Callback, job_id: str) -> Job:
        check_job_name(node.name)
        ref = node.id if isinstance(node, Node) else ""
        return Job(
            node.name,
            dict(node.args),
            id=job_id,
            enqueued_at=self.clock.now(),
            priority=check_priority(node.priority),
            retry=node.retry.to_dict() if node.retry else None,
            workflow=(run_id, ref),
            partition=node.partition if isinstance(node, Node) else None,
        )

    def encode(self, job: Job) -> bytes:
        return self.serializer.dumps(job.envelope())
