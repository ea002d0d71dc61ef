"""What the handler log and the producer's record of its calls say of the deduplicated job type
(``Dedup(key, until="finished", rerun_latest=True)``, docs/dedup.md), as far as at-least-once
delivery allows it under kill -9:

* **one at a time**: no two runs of jobs of one key at once (two jobs: the docs hold the key
  from the enqueue until the holder's life ends, and its rerun is queued only then), judged on
  the time the runs really executed, as the double-run check is (``active_spans``: a run
  without an end lasts until its process exited; time frozen by SIGSTOP, and the resume
  allowance after SIGCONT, do not count). Two runs of one job at once are the double-run
  check's;
* **every call handled**: every job a call was handed to (``enqueued``, ``replaced``,
  ``rerun_queued``) or that a ``dropped`` call named as holder ran to success, unless it went
  dead; its runs all had one call's arguments, a call handed to it (or one whose reply was
  lost), and not arguments a later call handed to it replaced before it started;
* **the latest arguments run last**: after the last call of a key, the last job of the key to
  start has that call's arguments (or those of a call after it whose reply was lost), starts
  after that call was sent and succeeds; at most one job starts after its reply (one more per
  call after it whose reply was lost; one more when that call answered ``rerun_queued``: the
  holder it found running, taken by a pool before the reply, may record its start after it).

The producer makes one call at a time, so calls never overlap. Pure: no I/O."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, replace

import orjson

from tests.support.invariants import OracleLog, Run
from tests.support.invariants.runs import active_spans

from .analysis import oracle_run
from .flow import FlowReport

__all__ = ["DedupCall", "KeyedRun", "check_dedup", "parse_keyed_runs"]

HANDED = ("enqueued", "replaced", "rerun_queued")


@dataclass(frozen=True)
class DedupCall:
    """One ``enqueue(..., dedup=...)`` of the producer: its key and ``seq`` (its args), when it
    was sent and when it returned or raised, what it said (``raised``: no reply), the returned
    Job's id (``carrier``) and the holder it named."""

    key: str
    seq: int
    send: float
    ret: float = math.inf
    status: str = "raised"
    carrier: str = ""
    holder: str = ""

    def shifted(self, t0: float) -> DedupCall:
        return replace(self, send=self.send - t0, ret=self.ret - t0)


@dataclass(frozen=True)
class KeyedRun:
    run: Run
    key: str
    seq: int


def parse_keyed_runs(raw: Iterable[bytes], name: str, t0: float = 0.0) -> list[KeyedRun]:
    """The oracle records of job ``name`` (with ``key`` and ``seq``) -> runs, paired as
    ``analysis.parse_runs`` pairs them."""
    runs: dict[tuple[str, int, float], KeyedRun] = {}
    for line in raw:
        e = orjson.loads(line)
        if e["name"] != name:
            continue
        k, run = oracle_run(e, t0)
        runs[k] = KeyedRun(run, str(e.get("key", "")), int(e.get("seq", -1)))
    return sorted(runs.values(), key=lambda r: r.run.start)


def _show(runs: Iterable[KeyedRun]) -> str:
    return ", ".join(
        f"{r.run.job_id} seq {r.seq} pid {r.run.pid} {r.run.start:.3f}-"
        f"{'?' if r.run.end is None else f'{r.run.end:.3f}'} {r.run.outcome}".rstrip()
        for r in runs
    )


def _one_at_a_time(key: str, runs: Sequence[KeyedRun], log: OracleLog, out: FlowReport) -> None:
    spans = [(r, active_spans(r.run, log)) for r in runs]
    for i, (b, sb) in enumerate(spans):
        for a, sa in spans[:i]:
            if a.run.job_id == b.run.job_id:
                continue
            at = [max(a0, b0) for a0, a1 in sa for b0, b1 in sb if max(a0, b0) < min(a1, b1)]
            if at:
                out.violations.append(
                    ("dedup-concurrency",
                     f"key {key}: two jobs ran at once at {min(at):.3f}: {_show((a, b))}")
                )  # fmt: skip


def _carrier(
    job: str,
    handed: Sequence[DedupCall],
    lost: Sequence[DedupCall],
    runs: Sequence[KeyedRun],
    out: FlowReport,
) -> None:
    """``handed``: the calls handed to ``job`` (or that named it as holder, dropped);
    ``lost``: the calls of its key whose reply was lost (any of them may have been handed to
    it)."""
    key = handed[0].key
    if not any(r.run.outcome == "ok" for r in runs):
        calls = sorted(c.seq for c in handed)
        out.violations.append(
            ("dedup-run", f"key {key}: job {job} (calls {calls}) never succeeded: {_show(runs)}")
        )
        if not runs:
            return
    seqs = {r.seq for r in runs}
    if len(seqs) > 1:
        out.violations.append(("dedup-args", f"key {key}: job {job} ran with args {sorted(seqs)}"))
    given = [c for c in handed if c.status != "dropped"]
    if not given:
        return  # a holder stored by a call whose reply was lost: its args are unknown
    sources = {c.seq: c for c in (*given, *lost)}
    source = sources.get(min(seqs))
    if source is None:
        out.violations.append(
            ("dedup-args", f"key {key}: job {job} ran with seq {min(seqs)}, of no call to it")
        )
        return
    first = min(r.run.start for r in runs)
    stale = [c for c in given if c.ret < first and c.send > source.ret]
    if stale:
        out.violations.append(
            ("dedup-args",
             f"key {key}: job {job} started at {first:.3f} with seq {source.seq}, replaced by "
             f"seq {stale[-1].seq} (returned at {stale[-1].ret:.3f})")
        )  # fmt: skip


def _latest(
    key: str, calls: Sequence[DedupCall], runs: Sequence[KeyedRun], dead: Collection[str]
) -> tuple[str, str] | None:
    """The last job of ``key`` to start has the args of its last call (see the module
    docstring); None when it holds or cannot be judged (the last answer a drop, a dead job)."""
    known = [c for c in calls if c.status != "raised"]
    if not known:
        return None
    last = max(known, key=lambda c: c.send)
    after = [c for c in calls if c.status == "raised" and c.send > last.send]
    if last.status == "dropped" or any(r.run.job_id in dead for r in runs):
        return None
    firsts: dict[str, KeyedRun] = {}
    for r in runs:
        firsts.setdefault(r.run.job_id, r)
    if not firsts:
        return ("dedup-latest", f"key {key}: nothing ran")
    final = max(firsts.values(), key=lambda r: r.run.start)
    ok = any(r.run.outcome == "ok" for r in runs if r.run.job_id == final.run.job_id)
    if final.seq not in {last.seq, *(c.seq for c in after)} or final.run.start <= last.send:
        call = f"seq {last.seq}, {last.status}, sent at {last.send:.3f}"
        return ("dedup-latest", f"key {key}: the last call ({call}) ran not last: {_show([final])}")
    if not ok:
        return ("dedup-latest", f"key {key}: the last job {final.run.job_id} never succeeded")
    late = [r for r in firsts.values() if r.run.start > last.ret]
    # the holder a last `rerun_queued` found running was taken by a pool before the reply
    # (fetched, or handed to an idle pool by its own enqueue), its handler's start recorded
    # after it: it may start late too, besides the rerun
    taken = last.status == "rerun_queued" and any(r.run.job_id == last.holder for r in late)
    if len(late) > 1 + len(after) + taken:
        return ("dedup-latest",
                f"key {key}: {len(late)} jobs started after the last call returned: "
                f"{_show(late)}")  # fmt: skip
    return None


def check_dedup(
    calls: Sequence[DedupCall],
    runs: Sequence[KeyedRun],
    log: OracleLog,
    dead: Collection[str] = (),
) -> FlowReport:
    """``calls`` and ``runs`` in the same time base; ``dead``: ids in the dead set (their life
    ended without success: not expected to succeed)."""
    out = FlowReport()
    calls_of: dict[str, list[DedupCall]] = defaultdict(list)
    runs_of: dict[str, list[KeyedRun]] = defaultdict(list)
    by_job: dict[str, list[KeyedRun]] = defaultdict(list)
    for c in sorted(calls, key=lambda c: c.send):
        calls_of[c.key].append(c)
    for r in runs:
        runs_of[r.key].append(r)
        by_job[r.run.job_id].append(r)
    for key in sorted(set(calls_of) | set(runs_of)):
        _one_at_a_time(key, runs_of[key], log, out)
        if (found := _latest(key, calls_of[key], runs_of[key], dead)) is not None:
            out.violations.append(found)
    handed: dict[str, list[DedupCall]] = defaultdict(list)
    for c in calls:
        if c.status in (*HANDED, "dropped"):
            handed[c.carrier].append(c)
    for job, cs in sorted(handed.items()):
        if job not in dead:
            lost = [c for c in calls_of[cs[0].key] if c.status == "raised"]
            _carrier(job, sorted(cs, key=lambda c: c.send), lost, by_job.get(job, []), out)
    statuses = Counter(c.status for c in calls)
    out.figures = {
        "dedup_calls": dict(sorted(statuses.items())),
        "dedup_keys": len(calls_of),
        "dedup_jobs_run": len(by_job),
        "dedup_runs": len(runs),
        "dedup_runs_by_outcome": dict(sorted(Counter(r.run.outcome for r in runs).items())),
        "dedup_violations": len(out.violations),
    }
    return out
