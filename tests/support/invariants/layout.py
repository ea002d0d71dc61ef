"""Reading a namespace as the invariant checker sees it: every key of the data layout, classified
through ``Keys`` (``LAYOUT`` must name every key ``Keys`` builds: ``test_invariants`` checks it),
read in one MULTI so the picture is consistent."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import orjson
from redis.asyncio import Redis

from errands.store.keys import Keys

__all__ = ["LAYOUT", "TEST_KEYS", "Snapshot", "done_status", "envelope_name", "snapshot", "text"]

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
    envelopes: dict[str, bytes]
    places: dict[str, list[tuple[str, str]]]  # id -> [(place, job name)]
    malformed: list[tuple[str, bytes]]  # (in-progress key, member)
    in_progress: dict[str, list[tuple[str, str]]]  # pool id -> [(id, name)]
    waiting_due: dict[str, float]  # id -> due ms (scheduled, retry)
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


async def snapshot(redis: Redis, keys: Keys, foreign: Sequence[str] = TEST_KEYS) -> Snapshot:
    """Read the namespace; keys under ``keys.prefix + f`` for ``f`` in ``foreign`` are not
    errands' (they belong to the tests) and are skipped."""
    singles = {
        getattr(keys, p): p for kind in ("hash", "zset", "set", "string") for p in LAYOUT[kind]
    }
    families = sorted(
        ((_family_prefix(keys, m), m) for m in LAYOUT["family"]), key=lambda f: -len(f[0])
    )
    found: dict[str, list[str]] = defaultdict(list)  # family -> variable parts
    other: list[str] = []
    async for raw in redis.scan_iter(match=_escape_glob(keys.prefix) + "*", count=1000):
        key = text(raw)
        if key in singles or key[len(keys.prefix) :].startswith(tuple(foreign)):
            continue
        for prefix, method in families:
            if key.startswith(prefix):
                found[method].append(key[len(prefix) :])
                break
        else:
            other.append(key)

    zset_fams = ("queue", "scheduled", "retry", "in_progress", "history_of")
    limit_zsets = ("partition_queue", "partitions_ready", "partitions_waiting")
    ttl_fams = ("rate_log", "rate_expiry", "limiter")
    async with redis.pipeline(transaction=True) as pipe:
        pipe.time()
        for p in EXPIRING:
            pipe.pttl(getattr(keys, p))
        for p in LAYOUT["hash"]:
            pipe.hgetall(getattr(keys, p))
        for p in LAYOUT["zset"]:
            pipe.zrange(getattr(keys, p), 0, -1, withscores=True)
        for p in LAYOUT["set"]:
            pipe.smembers(getattr(keys, p))
        for fam in zset_fams:
            for part in found[fam]:
                pipe.zrange(getattr(keys, fam)(part), 0, -1, withscores=True)
        for job_id in found["done"]:
            pipe.get(keys.done(job_id))
            pipe.pttl(keys.done(job_id))
        for pool_id in found["pool_info"]:
            pipe.pttl(keys.pool_info(pool_id))
        for pool_id in found["serves"]:
            pipe.pttl(keys.serves(pool_id))
        for pool_id in found["handoff"]:
            pipe.pttl(keys.handoff(pool_id))
        for key in found["dedup_window"]:
            pipe.pttl(keys.dedup_window(key))
        runs = _runs(found["workflow"])
        for run_id, parts in runs.items():
            pipe.hgetall(keys.workflow(run_id))
            pipe.smembers(keys.workflow(run_id, "open"))
            pipe.zrange(keys.workflow(run_id, "in"), 0, -1)
            pipe.hkeys(keys.workflow(run_id, "env"))
            for part in parts:
                pipe.pttl(keys.workflow(run_id, part))
        buckets = [keys.metrics_minute(p) for p in found["metrics_minute"]]
        buckets += [keys.metrics_hour(p) for p in found["metrics_hour"]]
        for bucket in buckets:
            pipe.pttl(bucket)
        for fam in limit_zsets:
            for part in found[fam]:
                pipe.zrange(getattr(keys, fam)(part), 0, -1, withscores=True)
        for part in found["partitions_running"]:
            pipe.hgetall(keys.partitions_running(part))
        for fam in ttl_fams:
            for part in found[fam]:
                pipe.pttl(getattr(keys, fam)(part))
        replies = iter(await pipe.execute())

    secs, micros = next(replies)
    ttls = {p: int(next(replies)) for p in EXPIRING}
    hashes = {p: {text(k): v for k, v in next(replies).items()} for p in LAYOUT["hash"]}
    zsets = {p: {text(m): float(sc) for m, sc in next(replies)} for p in LAYOUT["zset"]}
    sets = {p: {text(m) for m in next(replies)} for p in LAYOUT["set"]}
    fam_members: dict[str, dict[str, list[tuple[bytes, float]]]] = {
        fam: {part: next(replies) for part in found[fam]} for fam in zset_fams
    }
    done = {job_id: (next(replies), int(next(replies))) for job_id in found["done"]}
    pool_infos = {pool_id: int(next(replies)) for pool_id in found["pool_info"]}
    serves = {pool_id: int(next(replies)) for pool_id in found["serves"]}
    handoffs = {pool_id: int(next(replies)) for pool_id in found["handoff"]}
    windows = {key: int(next(replies)) for key in found["dedup_window"]}
    workflows = {}
    for run_id, parts in runs.items():
        meta = {text(a): text(b) for a, b in next(replies).items()}
        open_, in_edges = {text(m) for m in next(replies)}, {text(m) for m in next(replies)}
        env = {text(m) for m in next(replies)}
        run_ttls = {part: int(next(replies)) for part in parts}
        stray = [p for p in parts if p and p not in WORKFLOW_PARTS]
        workflows[run_id] = RunSnap(meta, open_, in_edges, env, run_ttls, stray)
    metrics = {bucket: int(next(replies)) for bucket in buckets}
    limits: dict[str, dict[str, dict[str, float]]] = {
        fam: {part: {text(m): float(sc) for m, sc in next(replies)} for part in found[fam]}
        for fam in limit_zsets
    }
    limits["partitions_running"] = {
        part: {text(f): float(v) for f, v in next(replies).items()}
        for part in found["partitions_running"]
    }
    limit_ttls = {
        getattr(keys, fam)(part): int(next(replies)) for fam in ttl_fams for part in found[fam]
    }

    places: dict[str, list[tuple[str, str]]] = defaultdict(list)
    waiting_due: dict[str, float] = {}
    for fam, label in (("queue", "queue"), ("scheduled", "scheduled"), ("retry", "retry")):
        for name, members in fam_members[fam].items():
            for m, score in members:
                places[text(m)].append((f"{label}:{name}", name))
                if fam != "queue":
                    waiting_due[text(m)] = score
    malformed: list[tuple[str, bytes]] = []
    in_progress: dict[str, list[tuple[str, str]]] = {}
    for pool_id, members in fam_members["in_progress"].items():
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

    return Snapshot(
        keys=keys,
        now_ms=int(secs) * 1000 + int(micros) // 1000,
        other_keys=other,
        envelopes=hashes["jobs"],
        places=dict(places),
        malformed=malformed,
        in_progress=in_progress,
        waiting_due=waiting_due,
        hashes=hashes,
        zsets=zsets,
        sets=sets,
        done=done,
        pool_infos=pool_infos,
        serves=serves,
        handoffs=handoffs,
        dedup_windows=windows,
        history_of={n: {text(m) for m, _ in ms} for n, ms in fam_members["history_of"].items()},
        schedule_states=found["schedule_state"],
        ttls=ttls,
        workflows=workflows,
        metrics=metrics,
        limits=limits,
        limit_ttls=limit_ttls,
    )


def _runs(found: list[str]) -> dict[str, list[str]]:
    """run id -> the parts of its keys found ("" for the run's hash)."""
    runs: dict[str, list[str]] = defaultdict(list)
    for rest in found:
        run_id, _sep, part = rest.partition(":")
        runs[run_id].append(part)
    return dict(runs)


def envelope_name(raw: bytes) -> str | None:
    try:
        env = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    name = env.get("n") if isinstance(env, dict) else None
    return name if isinstance(name, str) else None


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
