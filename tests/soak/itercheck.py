"""What the handler log says of the iterable (checkpointed) job type (docs/long-jobs.md), as far
as at-least-once delivery allows it under kill -9 (a resume may replay the items done since the
last checkpoint, never skip one):

* **no item skipped**: a run that resumes from cursor ``c`` starts after items ``0..c`` were
  all done (each item is recorded before its cursor is yielded, so before a checkpoint can hold
  it): a resume starts at or before the last checkpoint;
* **in order**: each run does the items after its cursor one by one, none left out;
* **a completed run ends with all items**: a run that succeeded did every item from its cursor
  to the last;
* **every item at least once**: every job that did not end otherwise (dead, cancelled,
  destroyed) succeeded, and its runs did every item;
* **nothing twice at once**: no two runs of a job at once, judged on the time they really
  executed (``active_spans``, as the double-run check).

Pure: no I/O."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

import orjson

from tests.support.invariants import OracleLog, Run
from tests.support.invariants.runs import active_spans

from .analysis import oracle_run
from .flow import FlowReport

__all__ = ["IterRun", "check_iterable", "parse_iter_runs"]


@dataclass(frozen=True)
class IterRun:
    run: Run
    cursor: int | None  # the cursor it started from
    items: int  # the job's number of items
    done: tuple[tuple[float, int], ...]  # (when, item) of each item it recorded, in time order


def parse_iter_runs(
    raw_runs: Iterable[bytes], raw_items: Iterable[bytes], name: str, t0: float = 0.0
) -> list[IterRun]:
    """The oracle records of job ``name`` (with ``cursor`` and ``items``) and of its items ->
    runs, paired as ``analysis.parse_runs`` pairs them; an item belongs to the run of the same
    job, pid and start."""
    done: dict[tuple[str, int, float], list[tuple[float, int]]] = defaultdict(list)
    for line in raw_items:
        e = orjson.loads(line)
        k = (e["id"], int(e["pid"]), float(e["start"]))
        done[k].append((float(e["at"]) - t0, int(e["item"])))
    runs: dict[tuple[str, int, float], IterRun] = {}
    for line in raw_runs:
        e = orjson.loads(line)
        if e["name"] != name:
            continue
        k, run = oracle_run(e, t0)
        cursor = e.get("cursor")
        items = tuple(sorted(done.get(k, [])))
        runs[k] = IterRun(run, None if cursor is None else int(cursor), int(e["items"]), items)
    return sorted(runs.values(), key=lambda r: r.run.start)


def _show(r: IterRun) -> str:
    end = "?" if r.run.end is None else f"{r.run.end:.3f}"
    items = [i for _t, i in r.done]
    shown = f"{items[0]}..{items[-1]} ({len(items)})" if items else "none"
    return (
        f"pid {r.run.pid} {r.run.start:.3f}-{end} {r.run.outcome or '(no end)'} from cursor "
        f"{r.cursor}, items {shown}"
    )


def _job(job: str, runs: Sequence[IterRun], log: OracleLog, out: FlowReport) -> None:
    """The checks of one job's runs (in start order)."""
    for i, r in enumerate(runs):
        first = 0 if r.cursor is None else r.cursor + 1
        before = {item for p in runs for t, item in p.done if t < r.run.start}
        if missing := sorted(set(range(first)) - before):
            out.violations.append(
                ("iter-skip",
                 f"{job}: a run resumed from cursor {r.cursor} at {r.run.start:.3f}, but items "
                 f"{missing[:10]} were not done before: {_show(r)}")
            )  # fmt: skip
        items = [item for _t, item in r.done]
        if items != list(range(first, first + len(items))):
            out.violations.append(("iter-order", f"{job}: items out of order: {_show(r)}"))
        elif r.run.outcome == "ok" and first + len(items) != r.items:
            out.violations.append(
                ("iter-incomplete", f"{job}: a run succeeded without every item: {_show(r)}")
            )
        spans = active_spans(r.run, log)
        for p in runs[:i]:
            at = [
                max(a0, b0)
                for a0, a1 in active_spans(p.run, log)
                for b0, b1 in spans
                if max(a0, b0) < min(a1, b1)
            ]
            if at:
                out.violations.append(
                    ("iter-overlap",
                     f"{job}: two runs at once at {min(at):.3f}: {_show(p)}; {_show(r)}")
                )  # fmt: skip


def check_iterable(
    runs: Sequence[IterRun], log: OracleLog, required: Collection[str] = ()
) -> FlowReport:
    """``required``: the jobs that must have done every item (enqueued, and not dead,
    cancelled or destroyed)."""
    out = FlowReport()
    by_job: dict[str, list[IterRun]] = defaultdict(list)
    for r in runs:
        by_job[r.run.job_id].append(r)
    for job, job_runs in sorted(by_job.items()):
        _job(job, job_runs, log, out)
    for job in sorted(set(required)):
        job_runs = by_job.get(job, [])
        if not any(r.run.outcome == "ok" for r in job_runs):
            out.violations.append(("iter-missing", f"{job}: never succeeded"))
            continue
        done = {item for r in job_runs for _t, item in r.done}
        if missing := sorted(set(range(job_runs[0].items)) - done):
            out.violations.append(("iter-missing", f"{job}: items {missing[:10]} never done"))
    records = Counter((r.run.job_id, item) for r in runs for _t, item in r.done)
    out.figures = {
        "iter_jobs_run": len(by_job),
        "iter_runs": len(runs),
        "iter_runs_by_outcome": dict(sorted(Counter(r.run.outcome for r in runs).items())),
        "iter_resumes": sum(1 for r in runs if r.cursor is not None),
        "iter_items_done": len(records),
        "iter_items_replayed": sum(n - 1 for n in records.values()),
        "iter_violations": len(out.violations),
    }
    return out
