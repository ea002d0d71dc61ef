"""What the admin API reports about a job: ``JobInfo``, pages of them, and how a job's status
is derived from where its id is stored (no status field is kept on the hot path)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import orjson

from ..store.keys import check_job_name

__all__ = ["HistoryEntry", "JobInfo", "JobStatus", "Page", "PoolInfo", "QueueInfo", "WorkerInfo"]

T = TypeVar("T")


class JobStatus:
    QUEUED = "queued"
    SCHEDULED = "scheduled"
    IN_PROGRESS = "in_progress"
    RETRYING = "retrying"
    FINISHED = "finished"
    DEAD = "dead"
    CANCELLED = "cancelled"
    ALL = (QUEUED, SCHEDULED, IN_PROGRESS, RETRYING, FINISHED, DEAD, CANCELLED)
    # a workflow member waiting for its dependencies: not a job on any queue yet (not listed
    # by status, see docs/workflows.md)
    WAITING = "waiting"


@dataclass
class JobInfo:
    """A job as the client sees it. ``corrupt`` is set (with ``raw``) for undecodable entries."""

    id: str
    name: str
    status: str
    args: dict[str, Any] = field(default_factory=dict)
    priority: int = 0
    fails: int = 0
    previous_attempts: int = 0  # attempts before a retry of the dead job reset ``fails``
    edits: int = 0  # times it was edited (Client.update_job), each recorded in its history
    enqueued_at: float | None = None
    due_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    result: Any = None
    error: dict[str, Any] | None = None
    checkin: dict[str, Any] | None = None
    # an iterable job's last checkpoint: cursor, done (items), runtime (s, every run), at
    progress: dict[str, Any] | None = None
    pool_id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    workflow_id: str | None = None  # the workflow run of a member or callback
    workflow_node: str | None = None  # its node ("" for a callback)
    partition: str | None = None
    waiting_for: str | None = None  # why a queued job waits: a limit, a pause (docs/limits.md)
    corrupt: bool = False
    raw: bytes | None = None

    @property
    def attempts(self) -> int:
        """Attempts made so far (a finished job counts its successful one)."""
        return self.fails + (1 if self.status in (JobStatus.FINISHED, JobStatus.IN_PROGRESS) else 0)

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "raw"}
        out["attempts"], out["duration"] = self.attempts, self.duration
        return out


@dataclass
class Page(Generic[T]):
    """One page of a listing: ``items``, the ``total`` across pages, ``page`` (1-based)."""

    items: list[T]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


@dataclass
class HistoryEntry:
    """One attempt of a job: finished, failed (and retried), dead, dropped or cancelled."""

    id: str
    name: str
    status: str
    attempt: int
    args: dict[str, Any]
    started_at: float | None
    finished_at: float | None
    result: Any = None
    error: dict[str, Any] | None = None

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at


@dataclass
class QueueInfo:
    name: str
    queued: int
    scheduled: int
    retrying: int
    running: int
    paused: bool
    max_concurrency: int
    latency: float  # seconds the job at the head of the queue has waited
    served: bool | None = None  # a running pool serves this name (None: not looked up)


@dataclass
class PoolInfo:
    id: str
    host: str
    pid: int
    started_at: float
    last_beat: float
    concurrency: int
    job_names: list[str]
    busy: int
    # when (Unix time) the pool went quiet (``WorkerPool.quiet()``, SIGTSTP): it takes no new
    # job; None while it takes jobs (or for a pool of an errands without quiet)
    quiet_since: float | None = None

    @property
    def quiet(self) -> bool:
        return self.quiet_since is not None


@dataclass
class WorkerInfo:
    """One busy slot of a pool: the job it runs."""

    pool_id: str
    job_id: str
    job_name: str
    args: dict[str, Any]
    started_at: float
    checkin: dict[str, Any] | None


def decode_json(raw: bytes | None) -> dict[str, Any] | None:
    """A stored JSON object (an error, a checkin, an envelope...); None when it is missing,
    not JSON, or JSON of another kind (a list, a string: corrupt), so readers can ``.get``."""
    if raw is None:
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def info_from_envelope(id: str, raw: bytes, status: str, fallback_name: str = "?") -> JobInfo:
    """JobInfo from a stored envelope; a corrupt one is reported, never raised."""
    env = decode_json(raw)
    try:
        if not isinstance(env, dict) or not isinstance(env.get("a"), dict):
            raise ValueError("not an envelope")
        name, meta = env.get("n"), env.get("m") or {}
        if not isinstance(meta, dict):
            raise ValueError("meta is not an object")
        return JobInfo(
            id=id,
            name=check_job_name(name),  # type: ignore[arg-type]
            status=status,
            args=env["a"],
            priority=_int(env.get("p", 0)),
            fails=_int(env.get("f", 0)),
            previous_attempts=_int(env.get("h", 0)),
            edits=_int(env.get("e", 0)),
            enqueued_at=_number(env.get("t")),
            due_at=_number(env.get("d")),
            meta=meta,
            workflow_id=_workflow(env.get("w"), 0),
            workflow_node=_workflow(env.get("w"), 1),
            partition=env.get("k") if isinstance(env.get("k"), str) else None,
        )
    except (ValueError, TypeError):
        return JobInfo(id=id, name=fallback_name, status=status, corrupt=True, raw=raw)


def _workflow(ref: Any, index: int) -> str | None:
    """The run id (0) or node (1) of an envelope's workflow reference ``[run, node]``."""
    if isinstance(ref, list) and len(ref) == 2 and isinstance(ref[index], str):
        return str(ref[index])
    return None


def _int(value: Any) -> int:
    if type(value) is not int:
        raise ValueError(f"not an integer: {value!r:.40}")
    return value


def _number(value: Any) -> float | None:
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError(f"not a number: {value!r:.40}")
    return float(value)


def info_from_record(rec: dict[str, Any] | None) -> JobInfo | None:
    """JobInfo from a done record (finished or cancelled, kept with a TTL), as
    ``records.record_of`` reads it."""
    if rec is None or not isinstance(rec.get("status"), str):
        return None
    job = info_from_envelope(str(rec.get("id")), orjson.dumps(rec.get("job")), rec["status"])
    job.result = rec.get("result")
    job.started_at = _seconds(rec.get("started"))
    job.finished_at = _seconds(rec.get("finished"))
    return job


def history_from_record(rec: dict[str, Any] | None) -> HistoryEntry | None:
    """HistoryEntry from an attempt's record, as ``records.record_of`` reads it."""
    if rec is None:
        return None
    job = rec.get("job")
    env: dict[str, Any] = job if isinstance(job, dict) else {}
    args, attempt = env.get("a"), rec.get("attempt", 0)
    return HistoryEntry(
        id=str(rec.get("id")),
        name=str(env.get("n", "?")),
        status=str(rec.get("status")),
        attempt=attempt if type(attempt) is int else 0,
        args=args if isinstance(args, dict) else {},
        started_at=_seconds(rec.get("started")),
        finished_at=_seconds(rec.get("finished")),
        result=rec.get("result"),
        error=rec["error"] if isinstance(rec.get("error"), dict) else None,
    )


def _seconds(ms: Any) -> float | None:
    if not isinstance(ms, int | float) or not ms:
        return None
    return ms / 1000.0
