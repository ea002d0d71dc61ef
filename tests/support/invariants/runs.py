"""The oracle's side of the invariant checker: handler runs recorded outside the Redis under test,
and what they must show (no job running twice at once, no cap exceeded, no acknowledged job lost).
Pure: no I/O. ``tests.support.invariants`` feeds it what it read from Redis.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["OracleLog", "Run", "active_spans", "check_runs", "max_overlap"]


@dataclass(frozen=True)
class Run:
    """One run of a handler, in time.time() seconds. ``end`` None: no end was recorded (its
    process died, or it still runs)."""

    job_id: str
    name: str
    pid: int
    start: float
    end: float | None = None
    outcome: str = ""  # ok | error | cancelled | ... ("" unknown)


@dataclass
class OracleLog:
    """What a test knows from outside the Redis under test."""

    runs: Sequence[Run] = ()
    caps: Mapping[str, int] = field(default_factory=dict)  # job name -> max_concurrency
    acknowledged: Collection[str] = ()  # ids whose enqueue returned
    gone_by_design: Collection[str] = ()  # ids the test deleted (destroy, skip_dead, trimming)
    exits: Mapping[int, float] = field(default_factory=dict)  # pid -> when it exited
    # pid -> (SIGSTOP time, SIGCONT time or inf) spans: a frozen process runs nothing
    frozen: Mapping[int, Sequence[tuple[float, float]]] = field(default_factory=dict)
    resume_allowance: float = 0.0  # seconds after a SIGCONT that do not count either
    horizon: float = math.inf  # end of a run without end whose process never exited


def active_spans(run: Run, log: OracleLog) -> list[tuple[float, float]]:
    """When a run really executed: from start to end (or its process's exit), minus the spans its
    process was frozen (and ``resume_allowance`` seconds after each resume)."""
    end = run.end if run.end is not None else log.exits.get(run.pid, log.horizon)
    spans = [(run.start, end)]
    for stop, cont in log.frozen.get(run.pid, ()):
        cut_to = cont + log.resume_allowance
        kept = []
        for a, b in spans:
            if cut_to <= a or stop >= b:
                kept.append((a, b))
                continue
            if a < stop:
                kept.append((a, stop))
            if cut_to < b:
                kept.append((cut_to, b))
        spans = kept
    return spans


def max_overlap(spans: Iterable[tuple[float, float]]) -> tuple[int, float]:
    """Most spans open at once, and when (an end at the instant of a start: no overlap)."""
    spans = list(spans)
    events = sorted([(a, 1) for a, _b in spans] + [(b, -1) for _a, b in spans])
    open_, most, when = 0, 0, 0.0
    for t, delta in events:
        open_ += delta
        if open_ > most:
            most, when = open_, t
    return most, when


def _show(runs: Iterable[Run]) -> str:
    return ", ".join(
        f"pid {r.pid} {r.start:.3f}-{'?' if r.end is None else f'{r.end:.3f}'} {r.outcome}".rstrip()
        for r in sorted(runs, key=lambda r: r.start)
    )


def check_runs(
    log: OracleLog,
    finished: Collection[str],
    alive: Collection[str],
    orphaned: Collection[str],
) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """(check, detail) of every violation, and figures. ``finished``: ids with a finished record;
    ``alive``: ids in a place (waiting, running, dead, cancelled); ``orphaned``: ids whose
    envelope is in no place."""
    out: list[tuple[str, str]] = []
    by_job: dict[str, list[Run]] = defaultdict(list)
    by_name: dict[str, list[Run]] = defaultdict(list)
    for run in log.runs:
        by_job[run.job_id].append(run)
        by_name[run.name].append(run)
    doubles = 0
    for job_id, runs in sorted(by_job.items()):
        if len(runs) < 2:
            continue
        most, when = max_overlap(sp for run in runs for sp in active_spans(run, log))
        if most > 1:
            doubles += 1
            out.append(
                ("double-run", f"job {job_id} ran {most}x at once at {when:.3f}: {_show(runs)}")
            )
    cap_max: dict[str, int] = {}
    for name, cap in sorted(log.caps.items()):
        if cap <= 0:
            continue
        most, when = max_overlap(
            sp for run in by_name.get(name, []) for sp in active_spans(run, log)
        )
        cap_max[name] = most
        if most > cap:
            out.append(
                ("cap", f"{most} runs of {name} at once at {when:.3f} (max_concurrency {cap})")
            )
    lost = 0
    gone = set(log.gone_by_design)
    for job_id in sorted(set(log.acknowledged) - gone):
        if job_id in alive or job_id in finished:
            continue
        lost += 1
        ran = f"; runs: {_show(by_job[job_id])}" if job_id in by_job else "; it never ran"
        what = (
            "is orphaned (its envelope is in no place)"
            if job_id in orphaned
            else ("is gone without a finished record")
        )
        out.append(("lost", f"acknowledged job {job_id} {what}{ran}"))
    return out, {"double_runs": doubles, "cap_max": cap_max, "lost": lost}
