"""The checks of flow control's keys (lua/lib/limits.lua, lua/lib/limserve.lua) in a namespace
snapshot (see ``tests.support.invariants``). Pure.

What is legal there, and why (the scripts' rules, not a guess):

* every entry of a job name's partition index (``pq``) is of a job stored, queued on that
  name's queue at the score the entry spells, in the partition the entry names: every script
  that takes a queued job off its queue or moves it there takes its entry in the same call
  (fetch, cancel, destroy, delete, update_job, a dedup replace). The fetch's dropping of stale
  entries (lim_serve_head) is a defence against data written by hand, not a state the scripts
  leave: such an entry is reported;
* a turn (``pready``) or a rate wait (``pwait``) of a partition none of whose jobs is queued is
  legal while the name's index holds other entries: a fetch that took a partition's last job
  may put it back in turn (lim_take_head, a lean round), and one whose jobs left while it
  waited for its rate keeps its wait; the name's next fetches drop them (the turn when it comes,
  or lim_prune; the wait once it is due, lim_unwait). Bounded by the partitions served, they are
  counted (``idle_turns``), not reported;
* with nothing of the name indexed, no turn and no wait is left: the fetch that takes the last
  entry drops both (lim_prune), and so does an admin call removing it (lib/dedup.lua
  dedup_unindex). Else they stayed for good while the name's jobs have no partition (no fetch
  serves partitions then) or no pool fetches the name.
"""

from __future__ import annotations

from collections import Counter

from .layout import Snapshot, text
from .report import Violation

__all__ = ["check_partitions", "idle_turns"]

OFFSET = 2**52  # lib/limits.lua LIM_OFFSET: queue scores made non-negative in the index


def _indexed(s: Snapshot) -> dict[str, set[str]]:
    """Job name -> the partitions its index holds entries of."""
    return {
        name: {e.split("\0")[0] for e in entries}
        for name, entries in s.limits["partition_queue"].items()
    }


def _check_index(s: Snapshot, part: dict[str, str]) -> list[Violation]:
    out: list[Violation] = []
    for name, entries in sorted(s.limits["partition_queue"].items()):
        queue = s.queues.get(name, {})
        for entry in sorted(entries):
            fields = entry.split("\0")
            if len(fields) != 3 or not fields[1].isdigit() or len(fields[1]) != 16:
                out.append(Violation("partitions", f"malformed index entry {entry!r} of {name}"))
                continue
            p, digits, job_id = fields
            where = f"index entry of job {job_id} in {name}[{p}]"
            if job_id not in s.envelopes:
                out.append(Violation("partitions", f"{where}: the job is not stored (stale)"))
            elif job_id not in queue:
                places = [pl for pl, _n in s.places.get(job_id, [])] or "nowhere"
                out.append(Violation("partitions", f"{where}: not queued in {name} ({places})"))
            elif queue[job_id] != int(digits) - OFFSET:
                out.append(
                    Violation(
                        "partitions",
                        f"{where} at score {int(digits) - OFFSET}, queued at {queue[job_id]:.0f}",
                    )
                )
            if job_id in s.envelopes and part.get(job_id) != p:
                out.append(Violation("partitions", f"{where}: its partition is {part.get(job_id)}"))
    return out


def _check_turns(s: Snapshot) -> list[Violation]:
    """No turn and no rate wait of a job name nothing of which is indexed."""
    out: list[Violation] = []
    indexed = _indexed(s)
    for fam in ("partitions_ready", "partitions_waiting"):
        for name, members in sorted(s.limits[fam].items()):
            if members and not indexed.get(name):
                shown = sorted(members)[:5]
                out.append(
                    Violation(
                        "partitions",
                        f"{fam} of {name} holds {len(members)} partitions {shown} though none of "
                        f"its queued jobs has a partition (left behind)",
                    )
                )
    return out


def idle_turns(s: Snapshot) -> int:
    """Turns and rate waits of partitions none of whose jobs is queued (legal, lazily dropped by
    the name's next fetches: see the module docstring)."""
    indexed = _indexed(s)
    return sum(
        1
        for fam in ("partitions_ready", "partitions_waiting")
        for name, members in s.limits[fam].items()
        for p in members
        if p not in indexed.get(name, set())
    )


def check_partitions(s: Snapshot) -> list[Violation]:
    """Flow control (lib/limits.lua): each partition's running counter equals its jobs in
    progress; every queued job of a partition is indexed, and its partition has a turn (ready),
    waits for its rate, or is busy (jobs of it run); every index entry is of such a job; a job's
    partition only while it lives; no turn or wait of a name with nothing indexed; the rate logs
    expire."""
    out: list[Violation] = []
    part = {i: text(p) for i, p in s.hashes["partitions"].items()}
    running: Counter[tuple[str, str]] = Counter()
    for held in s.in_progress.values():
        for job_id, name in held:
            if job_id in part:
                running[(name, part[job_id])] += 1
    counted = {
        (name, p): int(v) for name, fields in s.limits["partitions_running"].items()
        for p, v in fields.items()
    }  # fmt: skip
    for key in sorted(set(running) | set(counted)):
        if running[key] != counted.get(key, 0):
            out.append(
                Violation(
                    "partitions",
                    f"partitions_running of {key[0]}[{key[1]}] = {counted.get(key, 0)}, "
                    f"but {running[key]} of its jobs are in progress",
                )
            )
    for job_id in sorted(part):
        if job_id not in s.envelopes:
            out.append(Violation("partitions", f"partition of job {job_id} without its job"))
    out += _check_queued(s, part, counted)
    out += _check_index(s, part)
    out += _check_turns(s)
    for rate_key, ttl in sorted(s.limit_ttls.items()):
        if ttl == -1:
            out.append(Violation("keys", f"rate limit key {rate_key} has no TTL"))
    return out


def _check_queued(
    s: Snapshot, part: dict[str, str], counted: dict[tuple[str, str], int]
) -> list[Violation]:
    """Every queued job of a partition is indexed, and its partition has a turn, waits for its
    rate, or is busy."""
    out: list[Violation] = []
    indexed = {
        (name, entry.split("\0")[-1]) for name, entries in s.limits["partition_queue"].items()
        for entry in entries
    }  # fmt: skip
    for job_id, where in sorted(s.places.items()):
        for place, name in where:
            if not place.startswith("queue:") or job_id not in part:
                continue
            p = part[job_id]
            if (name, job_id) not in indexed:
                out.append(Violation("partitions", f"queued job {job_id} of {p} is not indexed"))
            elif (
                p not in s.limits["partitions_ready"].get(name, {})
                and p not in s.limits["partitions_waiting"].get(name, {})
                and not counted.get((name, p))
            ):
                out.append(Violation("partitions", f"partition {name}[{p}] has no turn"))
    return out
