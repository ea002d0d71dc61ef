"""The checks of a namespace snapshot (see ``tests.support.invariants``). Pure."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from .layout import Snapshot, done_status, envelope_field, envelope_name, text
from .partitions import check_partitions
from .report import Violation
from .workflows import check_workflows

__all__ = ["CHECKS", "check_drained"]


def _check_places(s: Snapshot) -> list[Violation]:
    out: list[Violation] = []
    registered = set(s.zsets["pools"])
    retired = set(s.zsets["retired"])  # lease taken by a reaper: drained by the reapers
    for job_id, where in sorted(s.places.items()):
        labels = [p for p, _n in where]
        if len(where) > 1:
            out.append(Violation("places", f"job {job_id} is in {len(where)} places: {labels}"))
        env = s.envelopes.get(job_id)
        if env is None:
            out.append(Violation("places", f"job {job_id} in {labels[0]} has no envelope"))
            continue
        name = envelope_name(env)
        for place, placed_name in where:
            if placed_name and name is not None and placed_name != name:
                out.append(Violation("places", f"job {job_id} of name {name!r} is in {place}"))
    for job_id, env in sorted(s.envelopes.items()):
        if job_id not in s.places:
            name = envelope_name(env)
            out.append(Violation("places", f"job {job_id} ({name}) is in no place: orphaned"))
    for pool_id, held in sorted(s.in_progress.items()):
        if pool_id not in registered and pool_id not in retired and held:
            ids = [i for i, _n in held[:5]]
            out.append(
                Violation(
                    "places",
                    f"in-progress set of pool {pool_id}, neither registered nor retired, holds "
                    f"{len(held)} jobs "
                    f"(nobody will reap them): {ids}",
                )
            )
    for key, member in s.malformed:
        out.append(Violation("places", f"malformed in-progress entry {member!r} in {key}"))
    for job_id, (raw, _ttl) in sorted(s.done.items()):
        if done_status(raw) == "finished" and job_id in s.envelopes:
            where = [p for p, _n in s.places.get(job_id, [])]
            out.append(
                Violation(
                    "places", f"job {job_id} finished (its record exists) yet is alive {where}"
                )
            )
    return out


def _check_attempts(s: Snapshot) -> list[Violation]:
    """Every job in an in-progress set has its attempt, recorded for that pool; no attempt for a
    job not in progress."""
    out: list[Violation] = []
    attempts = {job_id: text(v) for job_id, v in s.hashes["attempts"].items()}
    running: dict[str, str] = {}
    for pool_id, held in s.in_progress.items():
        for job_id, _name in held:
            running[job_id] = pool_id
            owner = attempts.get(job_id, "").partition(":")[0]
            if owner != pool_id:
                got = attempts.get(job_id, "none")
                out.append(
                    Violation("attempts", f"job {job_id} in progress in {pool_id}: attempt {got}")
                )
    for job_id in sorted(set(attempts) - set(running)):
        out.append(
            Violation("attempts", f"attempt {attempts[job_id]} of job {job_id}, not in progress")
        )
    return out


def _check_running(s: Snapshot) -> list[Violation]:
    out: list[Violation] = []
    counted: Counter[str] = Counter()
    for held in s.in_progress.values():
        counted.update(name for _id, name in held)
    running = {name: int(v) for name, v in s.hashes["running"].items()}
    for name in sorted(set(running) | set(counted)):
        have, want = running.get(name, 0), counted.get(name, 0)
        if have != want:
            out.append(
                Violation(
                    "running",
                    f"running[{name}] = {have} but {want} jobs of {name} are in progress"
                    + (" (a max_concurrency slot leaked)" if have > want else ""),
                )
            )
    return out


def _waiting(s: Snapshot, job_id: str) -> bool:
    return any(p.startswith(("queue:", "scheduled:")) for p, _n in s.places.get(job_id, []))


def _live(s: Snapshot, job_id: str) -> bool:
    """Waiting (queued, scheduled, retrying) or running."""
    return any(p not in ("dead", "cancelled") for p, _n in s.places.get(job_id, []))


def _running(s: Snapshot, job_id: str) -> bool:
    return any(p.startswith("in-progress:") for p, _n in s.places.get(job_id, []))


def _check_unique(s: Snapshot) -> list[Violation]:
    out: list[Violation] = []
    locks = {d: text(i) for d, i in s.hashes["unique"].items()}
    of_job = {i: text(d) for i, d in s.hashes["unique_of_job"].items()}
    expiry = s.zsets["unique_expiry"]
    for digest, holder in sorted(locks.items()):
        if not _waiting(s, holder):
            where = [p for p, _n in s.places.get(holder, [])] or "nowhere"
            out.append(
                Violation(
                    "unique", f"lock {digest} held by job {holder}, which is not waiting ({where})"
                )
            )
        if of_job.get(holder) != digest:
            out.append(
                Violation("unique", f"lock {digest} of {holder}: uniqjob says {of_job.get(holder)}")
            )
        if digest not in expiry:
            out.append(Violation("unique", f"lock {digest} has no expiry"))
    for job_id, digest in sorted(of_job.items()):
        if ":" in digest:  # a fetch's mark '<expiry>:<digest>', its lock released (jobstate.lua)
            if not _running(s, job_id):
                out.append(Violation("unique", f"fetch mark {job_id} -> {digest}: not running"))
        elif locks.get(digest) != job_id:
            out.append(
                Violation("unique", f"uniqjob {job_id} -> {digest}, a lock it does not hold")
            )
    for digest in sorted(set(expiry) - set(locks)):
        out.append(Violation("unique", f"expiry of lock {digest}, which nobody holds"))
    return out


def _check_dedup(s: Snapshot) -> list[Violation]:
    """Every dedup key is owned by a live job (a waiting one until it started), both sides of
    each lock agree, a waiting rerun waits for a started owner of its key; every throttle window
    expires."""
    out: list[Violation] = []
    owners = {key: text(i) for key, i in s.hashes["dedup"].items()}
    of_job = {i: text(v) for i, v in s.hashes["dedup_of_job"].items()}
    nexts = {key: text(i) for key, i in s.hashes["dedup_next"].items()}
    for key, owner in sorted(owners.items()):
        record = of_job.get(owner, "")
        where = [p for p, _n in s.places.get(owner, [])] or "nowhere"
        if record[1:] != key or record[:1] not in "sdfrFR":
            out.append(Violation("dedup", f"dedup key {key} of {owner}: its record is {record!r}"))
        if not _live(s, owner) or "rerun" in where:
            out.append(Violation("dedup", f"dedup key {key} held by {owner}, not live ({where})"))
        elif record[:1] in "sdfr" and not _waiting(s, owner):
            out.append(Violation("dedup", f"dedup key {key} of unstarted {owner} ({where})"))
    for owner, record in sorted(of_job.items()):
        mode, key = record[:1], record[1:]
        out += _check_dedup_recorded(s, owner, record)
        if mode == "n":
            if nexts.get(key) != owner or "dedup_reruns" not in _zsets_of(s, owner):
                out.append(Violation("dedup", f"rerun {owner} of {key} is not waiting as one"))
            if of_job.get(owners.get(key, ""), "")[:1] not in ("F", "R"):
                out.append(Violation("dedup", f"rerun {owner} of {key} waits for no running job"))
        elif mode in ("S", "D"):  # fetched, its key freed by that start (lib/dedup.lua)
            if not _running(s, owner):
                out.append(Violation("dedup", f"fetch mark {owner} -> {record}: not running"))
        elif owners.get(key) != owner:
            out.append(Violation("dedup", f"dedup record {owner} -> {record}: key not owned"))
    for key, rerun in sorted(nexts.items()):
        if of_job.get(rerun) != "n" + key:
            out.append(Violation("dedup", f"next of {key} is {rerun}, not a rerun of it"))
    for job_id in sorted(s.zsets["dedup_reruns"]):
        if of_job.get(job_id, "")[:1] != "n":
            out.append(Violation("dedup", f"job {job_id} waits as a rerun of no key"))
    for key, ttl in sorted(s.dedup_windows.items()):
        if ttl == -1:
            out.append(Violation("dedup", f"throttle window of {key} has no TTL"))
    return out


def _check_dedup_recorded(s: Snapshot, owner: str, record: str) -> list[Violation]:
    """The Dedup a job's envelope records (``x``: what a run again by hand retakes) is the one
    it holds its key in (a rerun's: rerun_latest), when the envelope records one."""
    x = envelope_field(s.envelopes.get(owner, b""), "x")
    mode, key = record[:1], record[1:]
    if x is None or mode not in "sdfrSDFRn":
        return []
    letter = "r" if mode == "n" else mode.lower()
    if x[:1] != letter or key.partition(":")[2] != x[1:]:
        return [Violation("dedup", f"dedup record {owner} -> {record}: its envelope says {x!r}")]
    return []


def _zsets_of(s: Snapshot, job_id: str) -> set[str]:
    return {name for name in ("dead", "cancelled", "dedup_reruns") if job_id in s.zsets[name]}


def _check_fields(s: Snapshot) -> list[Violation]:
    out: list[Violation] = []

    def where(job_id: str) -> str:
        places = [p for p, _n in s.places.get(job_id, [])]
        if places:
            return ", ".join(places)
        return "alive in no place" if job_id in s.envelopes else "its job is gone"

    for job_id in sorted(s.hashes["recoveries"]):
        if not _live(s, job_id):
            out.append(Violation("fields", f"recovery counter of job {job_id} ({where(job_id)})"))
    for job_id in sorted(s.hashes["checkins"]):
        if not _live(s, job_id):
            out.append(Violation("fields", f"check-in of job {job_id} ({where(job_id)})"))
    for job_id in sorted(s.hashes["cancel_requests"]):
        if not _running(s, job_id):
            out.append(Violation("fields", f"cancel request of job {job_id} ({where(job_id)})"))
    checkpoints = ("checkpoints", "checkpoint")  # iterable jobs: kept while the job is stored
    for prop, what in (("priorities", "priority"), ("errors", "last error"), checkpoints):
        for job_id in sorted(s.hashes[prop]):
            if job_id not in s.envelopes:
                out.append(Violation("fields", f"{what} of job {job_id}, which has no envelope"))
    return out


def _check_keys(s: Snapshot) -> list[Violation]:
    out = [
        Violation("keys", f"key {k!r} is not part of the data layout") for k in sorted(s.other_keys)
    ]
    out += [Violation("keys", f"key {w}: read as absent") for w in s.wrong_types]
    registered = set(s.zsets["pools"])
    for job_id, (raw, ttl) in sorted(s.done.items()):
        if raw is not None and ttl == -1:
            out.append(Violation("keys", f"finished record {s.keys.done(job_id)} has no TTL"))
        member = f"{job_id}:{text(raw)}" if raw is not None and raw.isdigit() else None
        if member is not None and member not in s.hashes["history_data"]:
            out.append(Violation("keys", f"finished record of {job_id} names {member}: none"))
    for pool_id in sorted(set(s.pool_infos) - registered):
        out.append(
            Violation(
                "keys",
                f"description of unregistered pool {pool_id} (TTL {s.pool_infos[pool_id]} ms)",
            )
        )
    for pool_id in sorted(set(s.hashes["quiet_requests"]) - registered):
        out.append(Violation("keys", f"quiet request of unregistered pool {pool_id}"))
    for pool_id, ttl in sorted(s.serves.items()):
        if ttl == -1:  # deleted at stop, else it expires: a pool that died leaves nothing for good
            out.append(Violation("keys", f"served names of pool {pool_id} have no TTL"))
    for pool_id in sorted(set(s.handoffs) - registered):
        if s.handoffs[pool_id] == -1:  # deleted when the pool is reaped or deregisters
            out.append(Violation("keys", f"hand-off list of unregistered pool {pool_id}"))
    for bucket, ttl in sorted(s.metrics.items()):
        if ttl == -1:  # activity counters (store/metrics.py) always expire
            out.append(Violation("keys", f"activity counters {bucket} have no TTL"))
    for name, ttl in sorted(s.ttls.items()):
        if ttl == -1:
            out.append(Violation("keys", f"{getattr(s.keys, name)} has no TTL"))
    for pool_id in sorted(s.sets["idle"] - registered):
        out.append(Violation("keys", f"idle mark of unregistered pool {pool_id}"))
    # the index: the history of each job name (and the global one of versions before issue 15)
    legacy, data = set(s.zsets["history"]), set(s.hashes["history_data"])
    index = set().union(*s.history_of.values()) if s.history_of else set()
    for member in sorted(data - index)[:100]:
        out.append(Violation("keys", f"history record {member} is not in the history index"))
    for member in sorted((index | legacy) - data)[:100]:
        out.append(Violation("keys", f"history entry {member} has no record"))
    for name in sorted(n for n, members in s.history_of.items() if members):
        if name not in s.sets["names"]:  # the history's trim goes over the names: kept for good
            out.append(Violation("keys", f"history of job name {name!r}, not in names"))
    return out


def check_drained(s: Snapshot, stopped: bool, overdue_ms: int) -> list[Violation]:
    out: list[Violation] = []
    paused = s.sets["paused"]
    for job_id, where in sorted(s.places.items()):
        for place, name in where:
            if place.startswith("queue:") and name not in paused:
                out.append(Violation("drained", f"job {job_id} still waits in {place}"))
            elif place.startswith("in-progress:"):
                out.append(Violation("drained", f"job {job_id} still in {place}"))
    for job_id, due in sorted(s.waiting_due.items()):
        if due < s.now_ms - overdue_ms:
            late = (s.now_ms - due) / 1000
            out.append(
                Violation(
                    "drained", f"job {job_id} is {late:.1f}s overdue in its scheduled or retry set"
                )
            )
    for name, v in sorted(s.hashes["running"].items()):
        if int(v) != 0:
            out.append(Violation("drained", f"running[{name}] = {int(v)} with nothing running"))
    for fam in ("partition_queue", "partitions_ready", "partitions_running"):
        for name, members in sorted(s.limits[fam].items()):
            if members and name not in paused:
                out.append(Violation("drained", f"{fam} of {name} still holds {len(members)}"))
    if stopped:
        for pool_id in sorted(s.zsets["pools"]):
            out.append(
                Violation("drained", f"pool {pool_id} still registered though every worker stopped")
            )
    return out


CHECKS: tuple[Callable[[Snapshot], list[Violation]], ...] = (
    _check_places,
    _check_attempts,
    _check_running,
    _check_unique,
    _check_dedup,
    _check_fields,
    _check_keys,
    check_workflows,
    check_partitions,
)
