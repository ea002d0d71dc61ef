"""What the handler log says of flow control and workflows (docs/limits.md, docs/workflows.md):

* **partition concurrency**: no two runs of one partition at once (``Concurrency(1,
  per_partition=True)``), judged on the time the runs really executed, as the ``max_concurrency``
  cap is (``active_spans``: a run without an end lasts until its process exited; time frozen by
  SIGSTOP, and the resume allowance after SIGCONT, do not count);
* **partition rate**: never more than ``rate`` **counted** starts of a partition in any window of
  ``per``. The rate bounds the starts the fetch counted, on the Redis clock, not the handlers'
  starts (which lag by the reply's latency, the lookahead wait and the event loop's lag: the
  docs say so), so each run's counted start is read from its attempt token ("<n>@<ms>", one per
  fetch: runs of the same job and token are one counted start). Every counted start in the log
  counts, re-runs and retries included; a start counted and never run (a job reaped from a dead
  pool before it started) is not in the log, which can only hide a violation, never make one;
* **workflows**: a member never starts before each of its parents had a run that ended well
  (its acknowledgement, which releases the member, follows that end), the ``on_success``
  callback never before every member did; every member of a run whose enqueue returned ran to
  success at least once, and its callback ran.

Pure: no I/O.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from tests.support.invariants import OracleLog, Run
from tests.support.invariants.runs import active_spans, max_overlap

from .analysis import oracle_run

__all__ = ["FlowReport", "PartRun", "check_partitions", "check_workflows", "parse_part_runs"]

# a workflow run: node -> (its parents, ...)
Graphs = Mapping[str, Mapping[str, tuple[tuple[str, ...], Any, Any]]]


@dataclass(frozen=True)
class PartRun:
    run: Run
    part: str
    counted: float | None  # Redis ms its start was counted at (None: the token says none)
    token: str


@dataclass
class FlowReport:
    violations: list[tuple[str, str]] = field(default_factory=list)  # (check, detail)
    figures: dict[str, Any] = field(default_factory=dict)
    overlap_causes: Counter[str] = field(default_factory=Counter)


def _counted(token: str) -> float | None:
    _n, at, ms = token.partition("@")
    return float(ms) if at and ms.isdigit() else None


def parse_part_runs(raw: Iterable[bytes], name: str, t0: float = 0.0) -> list[PartRun]:
    """The oracle records of job ``name`` (with ``part`` and ``token``) -> runs, as
    ``analysis.parse_runs`` pairs them."""
    runs: dict[tuple[str, int, float], PartRun] = {}
    for line in raw:
        e = orjson.loads(line)
        if e["name"] != name:
            continue
        k, run = oracle_run(e, t0)
        token = str(e.get("token") or "")
        runs[k] = PartRun(run, str(e.get("part") or ""), _counted(token), token)
    return sorted(runs.values(), key=lambda r: r.run.start)


def _show(runs: Iterable[Run]) -> str:
    return ", ".join(
        f"{r.job_id} pid {r.pid} {r.start:.3f}-{'?' if r.end is None else f'{r.end:.3f}'}"
        for r in runs
    )


def _overlaps(part: str, runs: Sequence[Run], log: OracleLog, cause: Any, out: FlowReport) -> int:
    spans = [(sp, r) for r in runs for sp in active_spans(r, log)]
    most, when = max_overlap(sp for sp, _r in spans)
    if most <= 1:
        return most
    at_once = [r for (a, b), r in spans if a <= when < b]
    first, second = sorted(at_once, key=lambda r: r.start)[:2]
    if first.pid == second.pid and first.job_id != second.job_id:
        why = "two of its jobs on the same worker"  # no fault makes a pool run both: no cause
    else:
        why = cause(first, second) if cause is not None else "unknown"
    out.overlap_causes[why] += 1
    out.violations.append(
        ("partition-concurrency",
         f"{most} runs of partition {part} at once at {when:.3f} ({why}): {_show(at_once)}")
    )  # fmt: skip
    return most


def _rate(part: str, runs: Sequence[PartRun], rate: int, per_ms: float, out: FlowReport) -> int:
    """Most counted starts of ``part`` in a window of ``per_ms``; a violation past ``rate``."""
    starts: dict[tuple[str, str], float] = {}
    for r in runs:
        if r.counted is not None:
            starts.setdefault((r.run.job_id, r.token), r.counted)
    times = sorted(starts.values())
    most, j = 0, 0
    for i, t in enumerate(times):  # the window [times[j], t]: every start less than per before t
        while t - times[j] >= per_ms:
            j += 1
        most = max(most, i - j + 1)
    for i in range(len(times) - rate):
        if times[i + rate] - times[i] < per_ms:
            seen = times[i : i + rate + 1]
            out.violations.append(
                ("partition-rate",
                 f"{rate + 1} counted starts of partition {part} within "
                 f"{times[i + rate] - times[i]:.0f} ms (Redis ms {seen})")
            )  # fmt: skip
            break
    return most


def check_partitions(
    runs: Sequence[PartRun],
    log: OracleLog,
    rate: int,
    per: float,
    cause: Any = None,
) -> FlowReport:
    """``cause(first, second)``: why two runs overlapped (``analysis.double_cause``)."""
    out = FlowReport()
    by_part: dict[str, list[PartRun]] = defaultdict(list)
    for r in runs:
        by_part[r.part].append(r)
    most_running, most_started = 0, 0
    for part, pruns in sorted(by_part.items()):
        most_running = max(most_running, _overlaps(part, [r.run for r in pruns], log, cause, out))
        most_started = max(most_started, _rate(part, pruns, rate, per * 1000, out))
    uncounted = sum(1 for r in runs if r.counted is None)
    if uncounted:
        out.violations.append(("partition-rate", f"{uncounted} runs without a counted start"))
    out.figures = {
        "partition_runs": len(runs),
        "partitions_run": len(by_part),
        "partition_running_max": most_running,
        "partition_counted_starts_max": most_started,
        "partition_concurrency_violations": sum(
            1 for c, _d in out.violations if c == "partition-concurrency"
        ),
        "partition_rate_violations": sum(1 for c, _d in out.violations if c == "partition-rate"),
        "partition_overlaps_by_cause": dict(sorted(out.overlap_causes.items())),
    }
    return out


def _ok_end(runs: Sequence[Run]) -> float | None:
    """When the first run that ended well ended (None: none did)."""
    ends = [r.end for r in runs if r.outcome == "ok" and r.end is not None]
    return min(ends) if ends else None


def _run_of(job_id: str) -> str:
    """The run of a member ("<run>.<node>") or callback ("<run>!on_success")."""
    return job_id.partition("!")[0].partition(".")[0]


def _early(r: Run, parents: Sequence[str], by_job: Mapping[str, Sequence[Run]]) -> list[str]:
    """The parents of ``r``'s job with no run that ended well before ``r`` started."""
    ends = {p: _ok_end(by_job.get(p, [])) for p in parents}
    return [p for p, end in ends.items() if end is None or end >= r.start]


def check_workflows(
    runs: Sequence[Run], graphs: Graphs, acked: Iterable[str], dead: Iterable[str] = ()
) -> FlowReport:
    """``graphs``: every run the producer sent (run id -> node -> (parents, ...)); ``acked``:
    the runs whose enqueue returned (a call that raised may have stored its run too); ``dead``:
    ids in the dead set (a member buried, by its retries or as poison, fails its run: the docs'
    policy "fail" cancels its dependents and no ``on_success`` runs)."""
    out = FlowReport()
    by_job: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        by_job[run.job_id].append(run)
    early = not_run = no_callback = failed = 0
    dead = set(dead)
    for run_id, graph in sorted(graphs.items()):
        callback = f"{run_id}!on_success"
        needs = {f"{run_id}.{n}": [f"{run_id}.{p}" for p in parents]
                 for n, (parents, *_rest) in graph.items()}  # fmt: skip
        needs[callback] = [f"{run_id}.{n}" for n in graph]
        for job_id, parents in sorted(needs.items()):
            for r in by_job.get(job_id, []):
                if late := _early(r, parents, by_job):
                    early += 1
                    out.violations.append(
                        ("workflow-order",
                         f"{job_id} started at {r.start:.3f} before {late} ended well: "
                         f"{_show(r2 for p in late for r2 in by_job.get(p, []))}")
                    )  # fmt: skip
    for run_id in sorted(set(acked)):
        if any(f"{run_id}.{node}" in dead for node in graphs[run_id]):
            failed += 1
            continue
        for node in sorted(graphs[run_id]):
            if _ok_end(by_job.get(f"{run_id}.{node}", [])) is None:
                not_run += 1
                out.violations.append(("workflow-run", f"member {run_id}.{node} never succeeded"))
        if _ok_end(by_job.get(f"{run_id}!on_success", [])) is None:
            no_callback += 1
            out.violations.append(("workflow-run", f"run {run_id}: on_success never succeeded"))
    member_runs = Counter(len(v) for k, v in by_job.items() if _run_of(k) in graphs)
    out.figures = {
        "workflow_runs_sent": len(graphs),
        "workflow_runs_acknowledged": len(set(acked)),
        "workflow_member_runs": sum(n * c for n, c in member_runs.items()),
        "workflow_jobs_run_more_than_once": sum(c for n, c in member_runs.items() if n > 1),
        "workflow_started_before_parents": early,
        "workflow_members_never_succeeded": not_run,
        "workflow_callbacks_missing": no_callback,
        "workflow_runs_failed_by_a_dead_member": failed,
    }
    return out
