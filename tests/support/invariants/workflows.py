"""The checks of workflow runs (see lua/lib/workflows.lua and docs/workflows.md). Pure.

* a running run: its keys carry no TTL; every open member is either waiting for its
  dependencies (its envelope in the run, at least one edge left to wait on) or released (a live
  job, waiting or running), and has its membership (``wfof``); nothing stranded: an edge left
  from a member that ended has that member's walk on the work list (``wfwork``);
* a finished run: nothing open, nothing waiting, no edge left, and every key carries a TTL;
* every membership names a running run in which the member is open;
* the indexes of runs: every run is listed; a listed run exists, or its linger is over (it
  leaves the index at the next trim); an expiry only for a listed run.
"""

from __future__ import annotations

from .layout import Snapshot
from .report import Violation

__all__ = ["check_workflows"]


def _alive(s: Snapshot, job_id: str) -> bool:
    return job_id in s.envelopes and any(
        p not in ("dead", "cancelled") for p, _n in s.places.get(job_id, [])
    )


def _walks(s: Snapshot, edges: bool = False) -> dict[str, set[str]]:
    """run id -> members whose dependents are still to walk (``wfwork``); with ``edges``,
    members ended while they waited whose own in edges are still to remove."""
    out: dict[str, set[str]] = {}
    for item in s.zsets["workflows_work"]:
        status, node, _cursor, run_id = item.split(" ", 3)
        if (status == "edges") == edges:
            out.setdefault(run_id, set()).add(node)
    return out


def _check_run(s: Snapshot, run_id: str) -> list[Violation]:
    out: list[Violation] = []
    r = s.workflows[run_id]
    of = {text_id: v.decode() for text_id, v in s.hashes["workflow_of"].items()}

    def bad(detail: str) -> None:
        out.append(Violation("workflows", f"run {run_id}: {detail}"))

    for part in r.stray:
        bad(f"key part {part!r} is not part of the data layout")
    status = r.meta.get("status")
    if not r.meta:
        bad(f"keys {sorted(r.ttls)} without the run's hash")
        return out
    if status == "running":
        for part, ttl in sorted(r.ttls.items()):
            if ttl >= 0:
                bad(f"key {part or 'run'} of a running run has a TTL ({ttl} ms)")
        waiting_on = {edge.partition("<")[0] for edge in r.in_edges}
        for node in sorted(r.open):
            job_id = f"{run_id}.{node}"
            if of.get(job_id) != run_id:
                bad(f"open member {node} has no membership")
            held, alive = node in r.env, _alive(s, job_id)
            if held and alive:
                bad(f"member {node} waits for its dependencies yet is a live job")
            elif held and node not in waiting_on:
                bad(f"member {node} waits with no dependency left: stranded")
            elif not held and not alive:
                bad(f"member {node} was released but is no live job: stranded")
        for node in sorted(n for n in r.env if not n.startswith("!")):
            if node not in r.open:
                bad(f"envelope of member {node}, which is not open")
        walking = _walks(s).get(run_id, set())
        unlinking = _walks(s, edges=True).get(run_id, set())
        for edge in sorted(r.in_edges):
            child, _, parent = edge.partition("<")
            if parent not in r.open and parent not in walking:
                bad(f"edge {edge}: {parent} ended and no walk of its dependents is left")
            if child not in r.env and child not in unlinking:
                bad(f"edge {edge}: {child} waits no more and no removal of its edges is left")
    else:
        if r.open or r.in_edges or r.env:
            bad(f"{status} run with open {sorted(r.open)[:5]}, edges or envelopes left")
        for part, ttl in sorted(r.ttls.items()):
            if ttl < 0:
                bad(f"key {part or 'run'} of a {status} run has no TTL")
    return out


def check_workflows(s: Snapshot) -> list[Violation]:
    out: list[Violation] = []
    for run_id in sorted(s.workflows):
        out += _check_run(s, run_id)
    listed, expiry = s.zsets["workflows"], s.zsets["workflows_expiry"]
    for run_id in sorted(set(s.workflows) - set(listed)):
        out.append(Violation("workflows", f"run {run_id} is not in the index of runs"))
    for run_id in sorted(set(listed) - set(s.workflows)):
        if expiry.get(run_id, float("inf")) > s.now_ms:
            out.append(Violation("workflows", f"listed run {run_id} is gone before its linger"))
    for run_id in sorted(set(expiry) - set(listed)):
        out.append(Violation("workflows", f"expiry of run {run_id}, which is not listed"))
    for job_id, raw in sorted(s.hashes["workflow_of"].items()):
        run_id = raw.decode()
        r = s.workflows.get(run_id)
        node = job_id[len(run_id) + 1 :]
        if r is None or r.meta.get("status") != "running":
            out.append(Violation("workflows", f"member {job_id} of run {run_id}, not running"))
        elif not job_id.startswith(run_id + ".") or node not in r.open:
            out.append(Violation("workflows", f"member {job_id} is not open in run {run_id}"))
    return out
