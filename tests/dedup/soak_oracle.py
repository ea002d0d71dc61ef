"""The oracle of the dedup soak: what the enqueue calls saw and what the workers ran, checked
against the promises of docs/dedup.md. Pure: no I/O. Every check is sound under unknown
ordering of concurrent calls: a violation is reported only when no order of the scripts in
Redis (each ran somewhere between its call's send and its reply) can explain what was seen."""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import orjson

__all__ = ["Call", "Run", "check", "parse_runs"]


@dataclass(frozen=True)
class Call:
    """One ``enqueue(..., dedup=...)``: its mode (job name), key, the ``seq`` in its args, when
    it was sent and when its reply came (time.time()), what it said."""

    mode: str
    key: str
    seq: int
    send: float
    ret: float
    status: str
    carrier: str  # the returned Job's id
    holder: str


@dataclass(frozen=True)
class Run:
    id: str
    mode: str
    key: str
    seq: int
    pid: int
    start: float
    end: float | None  # None: its worker was killed while it ran


def parse_runs(raw: Iterable[bytes]) -> list[Run]:
    """The app's records (a start entry, then an end entry of the same id, pid and start)."""
    runs: dict[tuple[str, int, float], Run] = {}
    for line in raw:
        e = orjson.loads(line)
        k = (e["id"], int(e["pid"]), float(e["start"]))
        end = e.get("end")
        runs[k] = Run(e["id"], e["name"], e["key"], int(e["seq"]), k[1], k[2],
                      None if end is None else float(end))  # fmt: skip
    return sorted(runs.values(), key=lambda r: r.start)


def check(calls: Sequence[Call], runs: Sequence[Run], window: float) -> list[str]:
    """Every violation found (empty: the soak kept every promise)."""
    out: list[str] = []
    by_job: dict[str, list[Run]] = defaultdict(list)
    for r in runs:
        by_job[r.id].append(r)
    keyed: dict[tuple[str, str], list[Call]] = defaultdict(list)
    for c in calls:
        keyed[(c.mode, c.key)].append(c)
    for (mode, key), cs in sorted(keyed.items()):
        if mode in ("finished", "rerun"):
            out += _one_live(mode, key, cs, runs, by_job)
        if mode == "throttle":
            out += _throttled(key, cs, window)
        if mode == "rerun":
            out += _last_burst(key, cs, runs, by_job)
    out += _carriers(calls, by_job)
    return out


def _one_live(
    mode: str, key: str, cs: Sequence[Call], runs: Sequence[Run], by_job: dict[str, list[Run]]
) -> list[str]:
    """Never two live jobs of a key held until finished. A job's key is freed at its ack, after
    the end of one of its runs (so not before its first end: a run cut off by a reaper and
    ending later, a zombie, counts for nothing): no other job may be accepted before that, nor
    start between its first start and its first end."""
    out = []
    accepted = sorted((c for c in cs if c.status == "enqueued"), key=lambda c: c.send)
    for a, b in itertools.pairwise(accepted):
        ends = [r.end for r in by_job.get(a.carrier, []) if r.end is not None]
        if b.send > a.ret and ends and b.ret < min(ends) and a.carrier != b.carrier:
            out.append(f"{mode} {key}: {b.carrier} accepted while {a.carrier} was live")
    jobs = {r.id for r in runs if r.key == key and r.mode == mode}
    for a in sorted(jobs):
        ends = [r.end for r in by_job[a] if r.end is not None]
        if not ends:
            continue
        first, first_end = min(r.start for r in by_job[a]), min(ends)
        for b in sorted(jobs - {a}):
            if any(first < r.start < first_end for r in by_job[b]):
                out.append(f"{mode} {key}: {b} started while {a} ran")
    return out


def _throttled(key: str, cs: Sequence[Call], window: float) -> list[str]:
    """At most one accepted enqueue per window: two accepted calls whose scripts could not
    have run ``window`` apart are a violation."""
    out = []
    accepted = sorted((c for c in cs if c.status == "enqueued"), key=lambda c: c.send)
    for i, a in enumerate(accepted):
        for b in accepted[i + 1 :]:
            if b.send - a.ret >= window:
                break
            if max(b.ret - a.send, a.ret - b.send) < window:
                out.append(f"throttle {key}: {a.carrier} and {b.carrier} in one window")
    return out


def _carriers(calls: Sequence[Call], by_job: dict[str, list[Run]]) -> list[str]:
    """Every job a call was handed to (stored, replaced, rerun) runs, once its envelope is
    fixed, with the args of a call handed to it, and not with args some call overwrote
    before it started (the latest args win)."""
    out = []
    handed: dict[str, list[Call]] = defaultdict(list)
    for c in calls:
        if c.status in ("enqueued", "replaced", "rerun_queued"):
            handed[c.carrier].append(c)
    for job, cs in sorted(handed.items()):
        ran = by_job.get(job, [])
        if not any(r.end is not None for r in ran):
            out.append(f"{cs[0].mode} {cs[0].key}: job {job} never ran to its end")
            continue
        seqs = {r.seq for r in ran}
        if len(seqs) > 1:
            out.append(f"{cs[0].mode} {cs[0].key}: job {job} ran with args {sorted(seqs)}")
        first = min(r.start for r in ran)
        by_seq = {c.seq: c for c in cs}
        z = by_seq.get(min(seqs))
        if z is None:
            out.append(f"{cs[0].mode} {cs[0].key}: job {job} ran with args of no call to it")
            continue
        stale = [c for c in cs if c.ret < first and c.send > z.ret]
        if stale:
            out.append(
                f"{z.mode} {z.key}: job {job} ran with seq {z.seq}, overwritten by seq "
                f"{stale[0].seq} before it started"
            )
    return out


def _last_burst(
    key: str, cs: Sequence[Call], runs: Sequence[Run], by_job: dict[str, list[Run]]
) -> list[str]:
    """After the last call of a rerun key: at most one job starts, and the last job to run has
    the args of the last call or of one concurrent with it."""
    last = max(cs, key=lambda c: c.send)
    mine = [r for r in runs if r.key == key and r.mode == "rerun"]
    if not mine:
        return [f"rerun {key}: nothing ran"]
    firsts = {job: min(r.start for r in by_job[job]) for job in {r.id for r in mine}}
    after = [job for job, start in firsts.items() if start > last.ret]
    out = []
    if len(after) > 1:
        out.append(f"rerun {key}: {len(after)} jobs started after the last call ({after})")
    final = max(firsts, key=lambda job: firsts[job])
    seq = by_job[final][0].seq
    sources = [c for c in cs if c.seq == seq]
    if not sources or sources[0].ret < last.send:
        out.append(f"rerun {key}: the last run ({final}, seq {seq}) has older args than seq "
                   f"{last.seq}")  # fmt: skip
    return out
