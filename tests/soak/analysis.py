"""What a soak's records say beyond the invariants: how long the jobs of a killed worker took to
start again elsewhere, and why each job that ran more than once did. Pure: no I/O."""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from tests.support.invariants import OracleLog, Run
from tests.support.invariants.runs import active_spans

__all__ = ["Analysis", "Events", "analyse", "double_cause", "in_flight", "parse_runs"]


def parse_runs(raw: Iterable[bytes | str], t0: float = 0.0) -> list[Run]:
    """The app's oracle records (a start entry, then an end entry with the same id, pid and
    start) -> runs, in seconds since ``t0``; a start without its end is a run whose end is
    unknown."""
    runs: dict[tuple[str, int, float], Run] = {}
    for line in raw:
        k, run = oracle_run(orjson.loads(line), t0)
        runs[k] = run
    return sorted(runs.values(), key=lambda r: r.start)


def oracle_run(e: Mapping[str, Any], t0: float = 0.0) -> tuple[tuple[str, int, float], Run]:
    """One oracle record -> the key that pairs its start and end entries (id, pid, start) and
    its run, in seconds since ``t0`` (end None while unknown)."""
    k = (e["id"], int(e["pid"]), float(e["start"]))
    end = e.get("end")
    run = Run(e["id"], e["name"], k[1], k[2] - t0,
              None if end is None else float(end) - t0, e.get("outcome", ""))  # fmt: skip
    return k, run


@dataclass
class Events:
    """What the driver did, in time.time() seconds."""

    kills: list[tuple[int, float]] = field(default_factory=list)  # (pid, when)
    exits: dict[int, float] = field(default_factory=dict)  # pid -> when it exited
    frozen: dict[int, list[tuple[float, float]]] = field(default_factory=dict)
    slots: dict[int, int] = field(default_factory=dict)  # pid -> worker slot
    # (worker slot or -1 for the producer, start, end, kind) of network faults; Redis restarts
    # have the target -2
    disturbed: list[tuple[int, float, float, str]] = field(default_factory=list)

    def shifted(self, t0: float) -> Events:
        """The same events in seconds since ``t0`` (the soak's start, as in its log)."""
        return Events(
            kills=[(pid, at - t0) for pid, at in self.kills],
            exits={pid: at - t0 for pid, at in self.exits.items()},
            frozen={
                pid: [(a - t0, b - t0) for a, b in spans] for pid, spans in self.frozen.items()
            },
            slots=dict(self.slots),
            disturbed=[(target, a - t0, b - t0, kind) for target, a, b, kind in self.disturbed],
        )


@dataclass
class Analysis:
    recovery_max: float = 0.0
    recoveries: int = 0  # jobs running at a SIGKILL that ran again
    not_recovered: list[str] = field(default_factory=list)
    reruns: Counter[str] = field(default_factory=Counter)  # cause -> how many
    doubles: Counter[str] = field(default_factory=Counter)  # cause of runs at once -> how many
    unexplained: list[str] = field(default_factory=list)  # reruns after success, no fault

    def figures(self) -> dict[str, Any]:
        return {
            "max_recovery_s": round(self.recovery_max, 2),
            "recovered_after_sigkill": self.recoveries,
            "not_recovered_after_sigkill": len(self.not_recovered),
            "reruns_by_cause": dict(sorted(self.reruns.items())),
            "double_runs_by_cause": dict(sorted(self.doubles.items())),
        }


def _recoveries(runs: Sequence[Run], events: Events, out: Analysis, settled: set[str]) -> None:
    """For each run going on at a SIGKILL of its worker: how long until the job started again
    elsewhere (0 when another run had already started it: a double run, reported as such)."""
    by_job: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        by_job[run.job_id].append(run)
    for pid, at in events.kills:
        for run in runs:
            if run.pid != pid or run.start > at or (run.end is not None and run.end <= at):
                continue
            later = [r.start for r in by_job[run.job_id] if r is not run and r.start > run.start]
            if later:
                out.recoveries += 1
                out.recovery_max = max(out.recovery_max, min(later) - at)
            elif run.job_id not in settled:
                out.not_recovered.append(run.job_id)


def _cause(prev: Run, nxt: Run, events: Events, resend_window: float) -> str:
    """Why ``nxt`` ran after ``prev`` (runs of one job, in start order)."""
    if any(a <= nxt.start and b >= prev.start for a, b in events.frozen.get(prev.pid, ())):
        return "worker frozen"
    if prev.end is not None and nxt.start < prev.end:
        return "while still running (a double run)"
    if prev.outcome == "error":
        return "retry"
    if prev.outcome in ("cancelled", "stopped"):  # (stopped: an iterable job its worker's
        return "requeued at stop"  # stop suspended between two items, resumed elsewhere)
    if prev.end is None:
        if any(pid == prev.pid and at <= nxt.start for pid, at in events.kills):
            return "worker killed"
        if events.exits.get(prev.pid, math.inf) > nxt.start:
            return "while still running (a double run)"
        return "worker exited mid-run"
    if any(pid == prev.pid and prev.start <= at <= nxt.start for pid, at in events.kills):
        return "worker killed before its ack"
    slot = events.slots.get(prev.pid, -99)
    for target, a, b, _kind in events.disturbed:
        if target in (slot, -2) and a <= nxt.start and b >= prev.start - 1.0:
            return "after success, network or Redis fault"
    for target, a, b, _kind in events.disturbed:
        # the producer's reply was held or lost around the enqueue: the client re-sent it
        if target == -1 and a - 1.0 <= prev.start <= b + resend_window:
            return "after success, producer fault (enqueue re-sent?)"
    return "after success, no fault"


def double_cause(
    first: Run, second: Run, events: Events, dead_timeout: float, resend_window: float
) -> str:
    """Why ``second`` started while ``first`` (same job, another run) still ran."""
    at = second.start
    if any(first.start <= b and a < at for a, b in events.frozen.get(first.pid, ())):
        return "its worker was frozen, resumed and ran on"
    resent = any(
        target == -1 and a - 1.0 <= first.start <= b + resend_window
        for target, a, b, _kind in events.disturbed
    )
    if first.pid == second.pid:
        return "the same worker ran it twice" + (" (enqueue re-sent?)" if resent else "")
    slot = events.slots.get(first.pid, -99)
    for target, a, b, kind in events.disturbed:
        if target == slot and a + dead_timeout / 2 <= at <= b + dead_timeout + 2.0:
            return f"its worker was cut off ({kind}), reaped while alive, and ran on"
    return "enqueue re-sent? (producer fault)" if resent else "no fault found"


def _overlap(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> bool:
    return any(max(a0, b0) < min(a1, b1) for a0, a1 in a for b0, b1 in b)


def _double_runs(
    runs: Sequence[Run],
    events: Events,
    out: Analysis,
    dead_timeout: float,
    allowance: float,
    resend_window: float,
) -> None:
    """The cause of each pair of runs of a job that really overlapped (as the checker sees it)."""
    log = OracleLog(exits=events.exits, frozen=events.frozen, resume_allowance=allowance)
    by_job: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        by_job[run.job_id].append(run)
    for job_runs in by_job.values():
        for i, second in enumerate(job_runs):
            for first in job_runs[:i]:
                if _overlap(active_spans(first, log), active_spans(second, log)):
                    cause = double_cause(first, second, events, dead_timeout, resend_window)
                    out.doubles[cause] += 1


def analyse(
    runs: Sequence[Run],
    events: Events,
    settled: Iterable[str] = (),
    resend_window: float = 5.0,
    dead_timeout: float = 3.0,
    allowance: float = 1.0,
) -> Analysis:
    """``settled``: ids of jobs that ended for good (finished, dead, cancelled, destroyed);
    ``resend_window``: how long after a fault on the producer's connections a client may re-send
    a command (its socket timeout and retries)."""
    out = Analysis()
    _recoveries(runs, events, out, set(settled))
    _double_runs(runs, events, out, dead_timeout, allowance, resend_window)
    by_job: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        by_job[run.job_id].append(run)
    for job_id, job_runs in by_job.items():
        for prev, nxt in itertools.pairwise(job_runs):
            cause = _cause(prev, nxt, events, resend_window)
            out.reruns[cause] += 1
            if cause == "after success, no fault":
                out.unexplained.append(job_id)
    return out


def in_flight(
    runs: Iterable[Run], events: Events, kinds: Mapping[str, str]
) -> dict[str, dict[str, int]]:
    """For each kind (label -> job name): how many of its runs were going on in a worker at the
    moment it was SIGKILLed (``killed``) or SIGSTOPped (``frozen``, at the start of each
    freeze): the runs a fault met, whose checks then judge a recovery. A run goes on at ``at``
    when its process is the one hit, it started at or before ``at`` and had not ended by then
    (a run without an end goes on until its process is gone)."""
    hits = [(pid, at, "killed") for pid, at in events.kills]
    hits += [(pid, a, "frozen") for pid, spans in events.frozen.items() for a, _b in spans]
    label_of = {name: label for label, name in kinds.items()}
    out = {label: {"killed": 0, "frozen": 0} for label in kinds}
    for run in runs:
        label = label_of.get(run.name)
        if label is None:
            continue
        for pid, at, how in hits:
            if run.pid == pid and run.start <= at and (run.end is None or run.end > at):
                out[label][how] += 1
    return out


def table(figures: Mapping[str, Any]) -> str:
    width = max(len(k) for k in figures)
    lines = []
    for k, v in figures.items():
        shown = f"{v:.2f}" if isinstance(v, float) and not math.isinf(v) else str(v)
        lines.append(f"  {k.ljust(width)}  {shown}")
    return "\n".join(lines)
