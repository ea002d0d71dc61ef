"""The Job a handler receives, and its stored envelope."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["DedupOutcome", "Job", "job_from_envelope"]


@dataclass(frozen=True, slots=True)
class DedupOutcome:
    """What an enqueue with ``dedup=`` did (``job.dedup``). ``status``:

    * ``"enqueued"``: the job was stored and holds ``key`` (``holder`` is its own id);
    * ``"dropped"``: ``holder`` holds the key, nothing was stored; the returned Job stands for
      the holder (its ``id``), so ``await job.result()`` waits for the holder's result;
    * ``"replaced"`` (debounce, rerun_latest): the waiting ``holder`` took this job's envelope
      (args, priority; with debounce also its due time); the returned Job stands for it;
    * ``"rerun_queued"`` (rerun_latest): ``holder`` runs; the rerun waiting for it (the
      returned Job's ``id``, new or already waiting) took this job's envelope.

    ``key`` is the dedup key as given.
    """

    status: str
    key: str
    holder: str

    @property
    def enqueued(self) -> bool:
        return self.status == "enqueued"


class Job:
    """One job: what to run (``name``, ``args``) and what is known about it.

    Handlers receive it: ``async def send_email(job: Job) -> None: job.args["address"]``.
    ``meta`` carries data set by enqueue middleware (a trace id, say) to process middleware.
    ``context`` is the pool's shared dict (filled by ``on_startup`` hooks).
    """

    __slots__ = (
        "_attempt",
        "_backend",
        "_context",
        "_dk",
        "_meta",
        "_raw",
        "_wf",
        "args",
        "dedup",
        "enqueued_at",
        "existed",
        "fails",
        "id",
        "name",
        "partition",
        "previous_attempts",
        "priority",
        "retry",
        "run_at",
        "snoozes",
        "timeout",
        "unique",
    )

    def __init__(
        self,
        name: str,
        args: dict[str, Any],
        *,
        id: str,
        enqueued_at: float,
        priority: int = 0,
        fails: int = 0,
        retry: dict[str, Any] | None = None,
        meta: dict[str, Any] | None = None,
        unique: str | None = None,
        run_at: float | None = None,
        previous_attempts: int = 0,
        workflow: tuple[str, str] | None = None,
        timeout: float | None = None,
        partition: str | None = None,
        snoozes: int = 0,
    ) -> None:
        self.id = id
        self.name = name
        self.args = args
        self.enqueued_at = enqueued_at
        self.priority = priority
        self.fails = fails
        self.retry = retry
        self._meta = meta  # (None: {} made on first use, as is the context: enqueue_many
        # builds thousands of jobs at once, and two empty dicts each cost their collections)
        self.unique = unique
        self.run_at = run_at
        self.previous_attempts = previous_attempts  # before a dead job was retried from scratch
        self.timeout = timeout  # seconds a run may take, overriding its job type's (None: that)
        self._wf = workflow  # (run id, node id) of a workflow member; node "" for a callback
        self.partition = partition  # served in turn with the other partitions (docs/limits.md)
        self.snoozes = snoozes  # times an in-handler limiter snoozed it (docs/limits.md)
        self._context: dict[str, Any] | None = None
        self._backend: Any = None
        self._raw: bytes | None = None  # the envelope as fetched: retries start from it
        self._attempt = ""  # the token of the attempt running it (see lua/fetch.lua)
        # set by enqueue: True when a job with this id was already there, so nothing was stored
        self.existed = False
        # set by an enqueue with dedup=: what happened (see DedupOutcome)
        self.dedup: DedupOutcome | None = None
        # its Dedup's mode letter and key (envelope "x"): an admin action that puts the job
        # back to wait once its life ended takes the key again (admin/relock.py, lua/move.lua)
        self._dk: str | None = None

    @property
    def meta(self) -> dict[str, Any]:
        """Data set by enqueue middleware, stored with the job (a dict, empty by default)."""
        if self._meta is None:
            self._meta = {}
        return self._meta

    @meta.setter
    def meta(self, value: dict[str, Any]) -> None:
        self._meta = value

    @property
    def context(self) -> dict[str, Any]:
        """The running pool's shared dict (filled by ``on_startup`` hooks); else an empty one."""
        if self._context is None:
            self._context = {}
        return self._context

    @context.setter
    def context(self, value: dict[str, Any]) -> None:
        self._context = value

    @property
    def attempt(self) -> int:
        """1 on the first run, 2 on the first retry, ..."""
        return self.fails + 1

    @property
    def history_attempt(self) -> int:
        """The number of this run in the job's history: it keeps counting when a dead job is
        retried with its failures reset (``Client.retry_dead_job``). (Worker._ack adds it up
        itself, without this property's call.)"""
        return self.previous_attempts + self.fails + 1

    async def checkin(self, message: object) -> bool:
        """Report progress from inside a handler; shown by ``Client.job`` and ``workers()``.
        The message is text: a dict or a list is stored as its JSON text
        (``{"progress": "11%"}``, not Python's repr; ``str()`` when it is not JSON data),
        anything else as ``str()`` gives it.
        Returns False (nothing recorded) when this run no longer holds the job: its pool lost
        its lease and the job was given to another pool."""
        if self._backend is None or not hasattr(self._backend, "checkin"):
            raise RuntimeError("checkin() works only inside a running handler")
        return bool(await self._backend.checkin(self, _message_text(message)))

    async def result(self, timeout: float | None = None) -> Any:
        """Wait for the job's result (its handler's return value) without polling.

        Raises ``JobFailedError`` if it ended in the dead set, ``JobCancelledError`` if it was
        cancelled, and ``TimeoutError`` after ``timeout`` seconds. However small the timeout (0
        too), its stored state is looked at once: a job that ended answers (docs/client.md).
        """
        if self._backend is None or not hasattr(self._backend, "result"):
            raise RuntimeError("this Job is not bound to an Enqueuer or Client")
        return await self._backend.result(self.id, timeout)

    @property
    def workflow_id(self) -> str | None:
        """The id of the workflow run this job belongs to (a member or a callback), else None.
        (Acker.add reads ``_wf`` itself, without this property's call.)"""
        return self._wf[0] if self._wf else None

    @property
    def workflow_node(self) -> str | None:
        """This member's node id in its workflow ("" for a callback), else None."""
        return self._wf[1] if self._wf else None

    @property
    def workflow(self) -> Any:
        """The run of the workflow this job belongs to (a ``WorkflowRun``: ``status()``,
        ``add(...)``, ``results()``, ...); inside a handler only."""
        if self._wf is None:
            raise RuntimeError(f"job {self.id} is not part of a workflow")
        if self._backend is None or not hasattr(self._backend, "workflow_run"):
            raise RuntimeError("job.workflow works only inside a running handler")
        return self._backend.workflow_run(self._wf[0])

    async def dependency_results(self) -> dict[str, Any]:
        """The outcomes of this member's dependencies, by node id: a dependency's return value,
        or a ``DependencyFailed`` for one that failed (under ``on_dependency_failure``
        "continue" or "ignore"). A workflow callback gets the outcome of every member."""
        return dict(await self.workflow.dependency_results(self._wf[1] if self._wf else ""))

    def __repr__(self) -> str:
        return f"<Job {self.name} id={self.id} fails={self.fails}>"

    # -- envelope -----------------------------------------------------------------------------
    def envelope(self) -> dict[str, Any]:
        """The JSON-able dict stored in Redis (short keys: it is read for every job)."""
        env: dict[str, Any] = {"n": self.name, "a": self.args, "t": self.enqueued_at}
        if self.priority:
            env["p"] = self.priority
        if self.fails:
            env["f"] = self.fails
        if self.retry:
            env["r"] = self.retry
        if self._meta:
            env["m"] = self._meta
        if self.unique:
            env["u"] = self.unique
        if self.run_at is not None:
            env["d"] = self.run_at
        if self.previous_attempts:
            env["h"] = self.previous_attempts
        if self._wf:
            env["w"] = list(self._wf)
        if self.timeout is not None:
            env["o"] = self.timeout
        if self.partition is not None:
            env["k"] = self.partition
        if self.snoozes:
            env["s"] = self.snoozes
        if self._dk:
            env["x"] = self._dk
        return env

    @classmethod
    def from_envelope(cls, id: str, env: Mapping[str, Any]) -> Job:
        """Rebuild a job; raises ``ValueError`` naming what is wrong with a corrupt envelope."""
        return job_from_envelope(id, env, cls)


def job_from_envelope(id: str, env: Mapping[str, Any], cls: type[Job] = Job) -> Job:
    """``cls.from_envelope(id, env)``: a function, which the worker calls for every job (the call
    of a classmethod is not specialised on Python 3.11, ~400 CPU instructions more)."""
    name = env.get("n")
    args = env.get("a")
    if not isinstance(name, str) or not name:
        raise ValueError("envelope has no job name")
    if not isinstance(args, dict):
        raise ValueError(f"envelope args must be an object, got {type(args).__name__}")
    size = len(env)
    if "t" in env and (
        size == 3
        or (size == 4 and ("k" in env or "x" in env))
        or (size == 5 and "k" in env and "x" in env)
    ):
        # name, args and enqueue time only (most jobs), or the same with a partition (every
        # job of a partitioned type) and/or a Dedup's record (x: every job enqueued with
        # dedup=): no option to check or look up. Made without __init__'s
        # keyword arguments (their defaults, keyword-only, are looked up one by one: ~2,000 CPU
        # instructions a job), and inline (a call less); every attribute __init__ sets is set,
        # to the same (tests/test_job_envelope.py)
        job = object.__new__(cls)
        job.id, job.name, job.args, job.enqueued_at = id, name, args, float(env["t"])
        job.priority = job.fails = job.previous_attempts = job.snoozes = 0
        job.retry = job._meta = job.unique = job.run_at = job.timeout = job._wf = None
        job.partition = env.get("k")
        job._context = job._backend = job._raw = job.dedup = job._dk = None
        job._attempt = ""
        job.existed = False
        if size > 3 and "x" in env:
            held = env["x"]
            job._dk = held if isinstance(held, str) else None
        return job
    # checked here, not when the job fails: a bad one would crash settling and strand the job
    retry, meta = env.get("r"), env.get("m")
    if retry is not None and not (
        isinstance(retry, dict) and type(retry.get("max_fails", 1)) is int
    ):
        raise ValueError(f"envelope retry options are invalid: {retry!r:.60}")
    if meta is not None and not isinstance(meta, dict):
        raise ValueError(f"envelope meta must be an object, got {type(meta).__name__}")
    timeout = env.get("o")
    if timeout is not None and not (isinstance(timeout, int | float) and timeout > 0):
        raise ValueError(f"envelope timeout must be a positive number, got {timeout!r:.60}")
    job = cls(
        name,
        args,
        id=id,
        enqueued_at=float(env.get("t", 0.0)),
        priority=int(env.get("p", 0)),
        fails=int(env.get("f", 0)),
        retry=env.get("r"),
        meta=env.get("m"),
        unique=env.get("u"),
        run_at=env.get("d"),
        previous_attempts=int(env.get("h", 0)),
        workflow=_workflow_ref(env.get("w")),
        timeout=None if timeout is None else float(timeout),
        partition=env.get("k"),
        snoozes=int(env.get("s", 0)),
    )
    held = env.get("x")  # (a Dedup's, kept for an admin action's re-run: see Job._dk)
    job._dk = held if isinstance(held, str) else None
    return job


def _workflow_ref(value: Any) -> tuple[str, str] | None:
    if value is None:
        return None
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value):
        return value[0], value[1]
    raise ValueError(f"envelope workflow reference is invalid: {value!r:.60}")


def _message_text(message: object) -> str:
    """A checkin's message as text: a ``str`` as it is; a dict or a list as its JSON text
    (``str()`` when it is not JSON data: an object in it, a NaN, a cycle); anything else as
    ``str()`` gives it (a str subclass such as a ``str`` Enum's member, True, None, a tuple, a
    number), as before JSON text was stored."""
    if type(message) is str:
        return message
    if isinstance(message, dict | list):
        try:
            return json.dumps(message, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError):  # (not JSON data: an object, a NaN, a cycle)
            pass
    return str(message)
