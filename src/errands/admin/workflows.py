"""The Client's view of workflow runs: list them, and a handle on one (status, cancel)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..checks import whole
from ..store.keys import Keys
from ..store.stored import stored_count, stored_text
from ..workflows.run import WorkflowRun
from ..workflows.store import WorkflowScripts
from .inputs import count
from .jobinfo import JobInfo, JobStatus, decode_json, info_from_envelope

__all__ = ["WorkflowAdmin", "WorkflowSummary", "member_state", "waiting_member"]


def _text(raw: bytes | str) -> str:
    return stored_text(raw)


@dataclass(frozen=True)
class WorkflowSummary:
    """One run as listed: times in Unix seconds (Redis clock)."""

    id: str
    name: str
    status: str
    created: float
    finished: float | None
    size: int
    failed_node: str | None


async def waiting_member(redis: Any, keys: Keys, job_id: str) -> JobInfo | None:
    """A workflow member still waiting for its dependencies (its envelope is in its run, not
    in ``jobs``), as a JobInfo of status ``waiting``; None for any other id."""
    run_id = await redis.hget(keys.workflow_of, job_id)
    if run_id is None:
        return None
    run_id = _text(run_id)
    node = job_id[len(run_id) + 1 :]
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hget(keys.workflow(run_id, "env"), node)
        pipe.zrangebylex(keys.workflow(run_id, "in"), f"[{node}<", f"({node}=")
        env, edges = await pipe.execute()
    if env is None:
        return None  # released meanwhile: a job now
    info = info_from_envelope(job_id, env, JobStatus.WAITING)
    deps = sorted(_text(e).partition("<")[2] for e in edges)
    info.waiting_for = "dependencies: " + ", ".join(deps[:10]) + (" ..." if len(deps) > 10 else "")
    return info


_MEMBER_ID_MAX = 200  # (members.py: a member id is a job id, of at most 200 characters)
_NODE_MAX = 120  # (graph.py: node ids of 1-120 characters)


async def member_state(redis: Any, keys: Keys, job_id: str, run: bytes | None) -> str | None:
    """For ``result()``: what a job found in none of the places a job is kept is as a workflow
    member. ``run``: its ``workflow_of`` (the caller read it). "waiting" while it waits for its
    dependencies (or was released meanwhile: a job now), "cancelled" when it ended without
    running (its run records it so until the run lingers out; its ``workflow_of`` went), None
    when it is no member (or one whose end left nothing but its run's record, as for a job)."""
    if run is not None:  # (a member not ended: waiting, or released since the caller's read)
        run_id = _text(run)
        node = job_id[len(run_id) + 1 :]
        async with redis.pipeline(transaction=True) as pipe:
            pipe.hexists(keys.workflow(run_id, "env"), node)
            pipe.hexists(keys.jobs, job_id)
            pipe.hget(keys.workflow(run_id, "res"), node)
            waiting, released, outcome = await pipe.execute()
        if waiting or released or outcome is not None:  # (ended since: its record tells)
            return "cancelled" if _cancelled(outcome) else "waiting"
        return None
    # ended: which run it was of is only in its id, "<run>.<node>" (both may hold dots); a
    # member id is at most 200 characters, its node at most 120 (as lib/wfids.lua's bound)
    if len(job_id) > _MEMBER_ID_MAX:
        return None
    tail = len(job_id) - 1 - _NODE_MAX
    splits = [i for i in range(max(1, tail), len(job_id) - 1) if job_id[i] == "."]
    if not splits:
        return None
    async with redis.pipeline(transaction=False) as pipe:
        for i in splits:
            pipe.hget(keys.workflow(job_id[:i], "res"), job_id[i + 1 :])
        outcomes = await pipe.execute()
    return "cancelled" if any(_cancelled(o) for o in outcomes) else None


def _cancelled(outcome: bytes | None) -> bool:
    """A member's outcome in its run's ``res`` (lib/workflows.lua): ended cancelled."""
    got = decode_json(outcome)
    return got is not None and got.get("s") == "cancelled"


class WorkflowAdmin:
    """Mixin of Client."""

    redis: Any
    keys: Keys

    def workflow(self, run_id: str) -> WorkflowRun:
        """A handle on run ``run_id``: ``await client.workflow(id).status()``, ``.cancel()``."""
        return WorkflowRun(self.redis, self.keys, run_id)

    async def workflows(self, limit: int = 50, offset: int = 0) -> list[WorkflowSummary]:
        """The runs stored and not lingered out, newest first: ``limit`` (>= 1) of them after
        the first ``offset`` (>= 0)."""
        limit, offset = count("limit", limit), whole("offset", offset, least=0, most=2**53)
        k = self.keys
        seconds, micros = await self.redis.time()
        now = int(seconds) * 1000 + int(micros) // 1000
        await WorkflowScripts(self.redis, k).trim(now)
        ids = [
            _text(i) for i in await self.redis.zrevrange(k.workflows, offset, offset + limit - 1)
        ]
        async with self.redis.pipeline(transaction=False) as pipe:
            for run_id in ids:
                pipe.hgetall(k.workflow(run_id))
            metas = await pipe.execute()
        out = []
        for run_id, raw in zip(ids, metas, strict=True):
            if not raw:
                continue
            m = {_text(a): _text(b) for a, b in raw.items()}
            finished = m.get("finished")
            out.append(
                WorkflowSummary(
                    run_id,
                    m.get("name", ""),
                    m.get("status", ""),
                    stored_count(m.get("created")) / 1000,  # (corrupt: 0)
                    stored_count(finished) / 1000 or None,
                    max(0, stored_count(m.get("size"))),
                    m.get("failed"),
                )
            )
        return out
