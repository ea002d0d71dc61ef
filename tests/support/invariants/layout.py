"""Reading a namespace as the invariant checker sees it: every key of the data layout, classified
through ``Keys`` (``LAYOUT`` must name every key ``Keys`` builds: ``test_invariants`` checks it),
listed and read in one step (snapshot.lua, a read-only script) so the picture is consistent even
while pools run: a SCAN then a MULTI missed a key created between the two (a job moving into it
was in no place) and read one deleted meanwhile as empty."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from redis.asyncio import Redis

from errands.store.keys import Keys

__all__ = [
    "LAYOUT", "TEST_KEYS", "Dump", "Snapshot", "build", "done_status", "dump", "envelope_name",
    "snapshot", "text",
]  # fmt: skip

LAYOUT: dict[str, tuple[str, ...]] = {
    "hash": (
        "jobs", "priorities", "running", "limits", "errors", "recoveries", "unique",
        "unique_of_job", "stats", "cancel_requests", "checkins", "history_data", "schedules",
        "code_schedules", "attempts", "checkpoints", "dedup", "dedup_of_job", "workflow_of",
        "outbox_relays", "dedup_next", "partitions", "runtime_limits", "code_limits",
        "listening", "scan_cursor", "quiet_requests",
    ),
    "zset": (
        "dead", "unique_expiry", "pools", "cancelled", "history", "retired", "ended",
        "dashboard_revoked", "dedup_reruns", "code_schedules_live", "workflows",
        "workflows_expiry", "workflows_work",
    ),
    "set": ("names", "paused", "idle"),
    "string": ("seq", "attempt_seq"),
    "channel": ("events_channel", "control_channel", "wake_channel", "pool_wake_channel"),
    "family": (
        "queue", "scheduled", "retry", "history_of", "done", "in_progress", "pool_info",
        "schedule_state", "serves", "dedup_window", "workflow", "metrics_minute",
        "metrics_hour", "partition_queue", "partitions_ready", "partitions_waiting",
        "partitions_running", "rate_log", "rate_expiry", "limiter", "reply", "idle_for",
        "handoff", "handoff_armed",
    ),
}  # fmt: skip

# single keys that must carry a TTL whenever they exist
EXPIRING = ("dashboard_revoked", "outbox_relays")

_PLACEHOLDER = "\x01"  # never in a name: marks where a family's variable part goes


WORKFLOW_PARTS = ("open", "in", "out", "nodes", "env", "res")


@dataclass
class RunSnap:
    """One workflow run's keys (see lua/lib/workflows.lua): ``ttls`` key part ("" for the
    run's hash) -> PTTL; ``stray`` parts the layout does not know."""

    meta: dict[str, str]
    open: set[str]
    in_edges: set[str]
    env: set[str]
    ttls: dict[str, int]
    stray: list[str]


@dataclass
class Snapshot:
    keys: Keys
    now_ms: int
    other_keys: list[str]  # keys of the namespace the layout does not know
    wrong_types: list[str]  # keys of another type than the layout gives them (read as absent)
    envelopes: dict[str, bytes]
    places: dict[str, list[tuple[str, str]]]  # id -> [(place, job name)]
    malformed: list[tuple[str, bytes]]  # (in-progress key, member)
    in_progress: dict[str, list[tuple[str, str]]]  # pool id -> [(id, name)]
    waiting_due: dict[str, float]  # id -> due ms (scheduled, retry)
    queues: dict[str, dict[str, float]]  # job name -> id -> queue score
    hashes: dict[str, dict[str, bytes]]
    zsets: dict[str, dict[str, float]]
    sets: dict[str, set[str]]
    done: dict[str, tuple[bytes | None, int]]  # id -> (record, pttl)
    pool_infos: dict[str, int]  # pool id -> pttl
    serves: dict[str, int]  # pool id -> pttl of the names it serves
    handoffs: dict[str, int]  # pool id -> pttl of its hand-off list
    dedup_windows: dict[str, int]  # dedup key -> pttl of its throttle window
    history_of: dict[str, set[str]]  # name -> members
    schedule_states: list[str]
    ttls: dict[str, int]  # EXPIRING key -> pttl (-2: absent)
    workflows: dict[str, RunSnap]  # run id -> its keys as read
    metrics: dict[str, int]  # metrics bucket key -> pttl
    # flow control (lib/limits.lua): family -> job name -> members (zsets) or fields (hash)
    limits: dict[str, dict[str, dict[str, float]]]
    limit_ttls: dict[str, int]  # rate_log / rate_expiry / limiter key -> pttl


def _family_prefix(keys: Keys, method: str) -> str:
    return str(getattr(keys, method)(_PLACEHOLDER)).split(_PLACEHOLDER)[0]


def _escape_glob(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def text(raw: bytes | str) -> str:
    return raw.decode(errors="replace") if isinstance(raw, bytes) else raw


# Keys of the namespace that belong to the tests, not to errands (tests.support.apps records).
TEST_KEYS = ("test:",)


SCRIPT = (Path(__file__).parent / "snapshot.lua").read_text()

# families whose values the checks do not read (their TTLs only): not sent by the script
_TTL_ONLY = (
    "pool_info", "serves", "handoff", "dedup_window", "metrics_minute", "metrics_hour",
    "rate_log", "rate_expiry", "limiter", "reply", "idle_for", "handoff_armed",
    "schedule_state",
)  # fmt: skip


@dataclass
class Dump:
    """Every key of a namespace as snapshot.lua read it in one step: its type, PTTL and value
    (hash, zset, set: the flat list; string: the string; list: its length; None: not read)."""

    now_ms: int
    types: dict[str, str]
    ttls: dict[str, int]
    values: dict[str, Any]


async def dump(redis: Redis, keys: Keys) -> Dump:
    """Read the namespace in one step (a read-only script: nothing moves between its listing
    of the keys and its reads of them)."""
    skip = [_family_prefix(keys, m) for m in _TTL_ONLY]
    reply = await redis.register_script(SCRIPT)(
        keys=[keys.jobs], args=[_escape_glob(keys.prefix) + "*", *skip]
    )
    secs, micros, rest = reply[0], reply[1], reply[2:]
    d = Dump(int(secs) * 1000 + int(micros) // 1000, {}, {}, {})
    for i in range(0, len(rest), 4):
        key = text(rest[i])
        d.types[key], d.ttls[key], d.values[key] = text(rest[i + 1]), int(rest[i + 2]), rest[i + 3]
    return d


async def snapshot(redis: Redis, keys: Keys, foreign: Sequence[str] = TEST_KEYS) -> Snapshot:
    """Read the namespace; keys under ``keys.prefix + f`` for ``f`` in ``foreign`` are not
    errands' (they belong to the tests) and are skipped."""
    return build(keys, await dump(redis, keys), foreign)


class _Reader:
    """The values of a dump by the type the layout gives them: a key of another type is noted
    (``wrong``) and read as absent."""

    def __init__(self, d: Dump) -> None:
        self.d = d
        self.wrong: list[str] = []

    def _of(self, key: str, kind: str) -> Any:
        have = self.d.types.get(key)
        if have is None:
            return None
        if have != kind:
            self.wrong.append(f"{key} is a {have}, not a {kind}")
            return None
        return self.d.values.get(key)

    def hash(self, key: str) -> dict[str, bytes]:
        flat = self._of(key, "hash") or []
        return {text(flat[i]): flat[i + 1] for i in range(0, len(flat), 2)}

    def zset(self, key: str) -> list[tuple[bytes, float]]:
        flat = self._of(key, "zset") or []
        return [(flat[i], float(flat[i + 1])) for i in range(0, len(flat), 2)]

    def members(self, key: str) -> set[str]:
        return {text(m) for m in self._of(key, "set") or []}

    def string(self, key: str) -> bytes | None:
        value = self._of(key, "string")
        return value if isinstance(value, bytes) else None

    def ttl(self, key: str) -> int:
        return self.d.ttls.get(key, -2)


def _classify(
    keys: Keys, d: Dump, foreign: Sequence[str]
) -> tuple[dict[str, list[str]], list[str]]:
    """The dump's keys by family (family -> their variable parts), and those the layout does not
    know; the single keys and the tests' own are left out."""
    singles = {getattr(keys, p) for kind in ("hash", "zset", "set", "string") for p in LAYOUT[kind]}
    families = sorted(
        ((_family_prefix(keys, m), m) for m in LAYOUT["family"]), key=lambda f: -len(f[0])
    )
    found: dict[str, list[str]] = defaultdict(list)
    other: list[str] = []
    for key in sorted(d.types):
        if key in singles or key[len(keys.prefix) :].startswith(tuple(foreign)):
            continue
        for prefix, method in families:
            if key.startswith(prefix):
                found[method].append(key[len(prefix) :])
                break
        else:
            other.append(key)
    return found, other


def build(keys: Keys, d: Dump, foreign: Sequence[str] = TEST_KEYS) -> Snapshot:
    """The snapshot of a dump (pure)."""
    found, other = _classify(keys, d, foreign)
    r = _Reader(d)
    hashes = {p: r.hash(getattr(keys, p)) for p in LAYOUT["hash"]}
    zsets = {p: {text(m): sc for m, sc in r.zset(getattr(keys, p))} for p in LAYOUT["zset"]}
    sets = {p: r.members(getattr(keys, p)) for p in LAYOUT["set"]}
    fam = {
        f: {part: r.zset(getattr(keys, f)(part)) for part in found[f]}
        for f in ("queue", "scheduled", "retry", "in_progress", "history_of")
    }
    limits = {
        f: {part: {text(m): sc for m, sc in r.zset(getattr(keys, f)(part))} for part in found[f]}
        for f in ("partition_queue", "partitions_ready", "partitions_waiting")
    }
    limits["partitions_running"] = {
        part: {f: float(v) for f, v in r.hash(keys.partitions_running(part)).items()}
        for part in found["partitions_running"]
    }
    ttl_of = {m: {part: r.ttl(getattr(keys, m)(part)) for part in found[m]} for m in _TTL_ONLY}
    places, waiting_due, malformed, in_progress = _places(keys, fam, zsets)
    buckets = [keys.metrics_minute(p) for p in found["metrics_minute"]]
    buckets += [keys.metrics_hour(p) for p in found["metrics_hour"]]
    return Snapshot(
        keys=keys,
        now_ms=d.now_ms,
        other_keys=other,
        wrong_types=r.wrong,
        envelopes=hashes["jobs"],
        places=places,
        malformed=malformed,
        in_progress=in_progress,
        waiting_due=waiting_due,
        queues={n: {text(m): sc for m, sc in ms} for n, ms in fam["queue"].items()},
        hashes=hashes,
        zsets=zsets,
        sets=sets,
        done={i: (r.string(keys.done(i)), r.ttl(keys.done(i))) for i in found["done"]},
        pool_infos=ttl_of["pool_info"],
        serves=ttl_of["serves"],
        handoffs=ttl_of["handoff"],
        dedup_windows=ttl_of["dedup_window"],
        history_of={n: {text(m) for m, _ in ms} for n, ms in fam["history_of"].items()},
        schedule_states=found["schedule_state"],
        ttls={p: r.ttl(getattr(keys, p)) for p in EXPIRING},
        workflows=_workflows(keys, r, found["workflow"]),
        metrics={bucket: r.ttl(bucket) for bucket in buckets},
        limits=limits,
        limit_ttls={
            getattr(keys, m)(part): ttl
            for m in ("rate_log", "rate_expiry", "limiter")
            for part, ttl in ttl_of[m].items()
        },
    )


def _places(
    keys: Keys, fam: dict[str, dict[str, list[tuple[bytes, float]]]], zsets: dict[str, Any]
) -> tuple[
    dict[str, list[tuple[str, str]]],
    dict[str, float],
    list[tuple[str, bytes]],
    dict[str, list[tuple[str, str]]],
]:
    """Every job's places (id -> [(place, job name)]), the due time of each scheduled or retried
    one, the malformed in-progress entries and each pool's jobs in progress."""
    places: dict[str, list[tuple[str, str]]] = defaultdict(list)
    waiting_due: dict[str, float] = {}
    for f in ("queue", "scheduled", "retry"):
        for name, members in fam[f].items():
            for m, score in members:
                places[text(m)].append((f"{f}:{name}", name))
                if f != "queue":
                    waiting_due[text(m)] = score
    malformed: list[tuple[str, bytes]] = []
    in_progress: dict[str, list[tuple[str, str]]] = {}
    for pool_id, members in fam["in_progress"].items():
        held = in_progress.setdefault(pool_id, [])
        for m, _score in members:
            job_id, sep, name = text(m).partition(":")
            if not sep or not job_id or not name:
                malformed.append((keys.in_progress(pool_id), m))
                continue
            held.append((job_id, name))
            places[job_id].append((f"in-progress:{pool_id}", name))
    for label, zset in (("dead", "dead"), ("cancelled", "cancelled"), ("rerun", "dedup_reruns")):
        for job_id in zsets[zset]:
            places[job_id].append((label, ""))
    return dict(places), waiting_due, malformed, in_progress


def _workflows(keys: Keys, r: _Reader, found: list[str]) -> dict[str, RunSnap]:
    out = {}
    for run_id, parts in _runs(found).items():
        out[run_id] = RunSnap(
            meta={k: text(v) for k, v in r.hash(keys.workflow(run_id)).items()},
            open=r.members(keys.workflow(run_id, "open")),
            in_edges={text(m) for m, _ in r.zset(keys.workflow(run_id, "in"))},
            env=set(r.hash(keys.workflow(run_id, "env"))),
            ttls={part: r.ttl(keys.workflow(run_id, part)) for part in parts},
            stray=[p for p in parts if p and p not in WORKFLOW_PARTS],
        )
    return out


def _runs(found: list[str]) -> dict[str, list[str]]:
    """run id -> the parts of its keys found ("" for the run's hash)."""
    runs: dict[str, list[str]] = defaultdict(list)
    for rest in found:
        run_id, _sep, part = rest.partition(":")
        runs[run_id].append(part)
    return dict(runs)


def envelope_name(raw: bytes) -> str | None:
    return envelope_field(raw, "n")


def envelope_field(raw: bytes, field: str) -> str | None:
    """A string field of an envelope (``n`` its name, ``x`` its Dedup); None when absent or
    the envelope is no JSON object."""
    try:
        env = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    value = env.get(field) if isinstance(env, dict) else None
    return value if isinstance(value, str) else None


def done_status(raw: bytes | None) -> str | None:
    """The status a result record says: the compact record of ack.lua (no ``status``) and one
    naming its attempt (digits: its record is in the history) say ``finished``."""
    if raw is None:
        return None
    if raw.isdigit():
        return "finished"
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return "<not JSON>"
    if isinstance(record, dict) and "status" not in record and "j" in record:
        return "finished"
    status = record.get("status") if isinstance(record, dict) else None
    return status if isinstance(status, str) else None
