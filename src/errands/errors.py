"""Exceptions raised by errands, and the ones handlers raise to steer a job."""

from __future__ import annotations

import math
import numbers

__all__ = [
    "BatchJobError",
    "DedupKeyHeldError",
    "DependencyFailed",
    "ErrandsError",
    "JobArgumentError",
    "JobCancelledError",
    "JobFailedError",
    "JobNotFoundError",
    "LimiterExhaustedError",
    "LimiterSnooze",
    "NonRetryableError",
    "NotReplicatedError",
    "PoolNotFoundError",
    "RedisUnavailableError",
    "RegistrationError",
    "RetryLater",
    "ScheduleNotFoundError",
    "UniqueLockHeldError",
    "UnknownJobError",
    "WorkflowError",
    "WorkflowNotFoundError",
]


class ErrandsError(Exception):
    """Base class of every error errands raises."""


class RegistrationError(ErrandsError, ValueError):
    """A job type, middleware or option was registered wrongly (raised at registration)."""


class RedisUnavailableError(ErrandsError, ConnectionError):
    """Redis could not be reached; the message names the URL (password hidden)."""


class NonRetryableError(ErrandsError):
    """Raise (or subclass) in a handler to send the job straight to the dead set."""


class JobArgumentError(NonRetryableError, TypeError):
    """A job's arguments do not fit its handler: a missing, unknown or mistyped field."""


class RetryLater(ErrandsError):
    """Raise in a handler to run the job again after ``delay`` seconds without counting a failure.
    ``delay`` is a real number (``int``, ``float``, ``Fraction``...: ``numbers.Real``; a ``bool``,
    ``str``, ``Decimal`` or ``None`` is a TypeError) that is finite and >= 0 (else ValueError);
    either error, raised in a handler, is an ordinary failure of the job. It is capped at
    ``RetryLater.MAX_DELAY`` (10 years; the due time, in ms, then stays far within the 2^53 ms
    the scripts take: lib/types.lua's MAX_MS).

    >>> raise RetryLater(30)   # snoozes for 30 seconds
    """

    MAX_DELAY = 10 * 365 * 86400.0

    def __init__(self, delay: float = 0.0, reason: str = "") -> None:
        if not _real(delay):
            raise TypeError(f"RetryLater delay must be a number of seconds, not {delay!r}")
        seconds = float(delay)
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"RetryLater delay must be a finite number >= 0, not {seconds!r}")
        seconds = min(seconds, self.MAX_DELAY)
        super().__init__(reason or f"retry later, in {seconds:g}s")
        self.delay = seconds


def _real(value: object) -> bool:
    """A real number (``numbers.Real``: typeshed's ``float`` is none, so mypy would take a check
    of it inline for one that never passes) other than a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


class LimiterSnooze(RetryLater):
    """Raised by ``limiter.acquire()`` over the limiter's limit, inside a handler: the job is
    snoozed until the limiter frees (no failure counted). Let it propagate."""


class BatchJobError(ErrandsError):
    """A job of a batch failed with a message, not an exception: a string given as its entry of
    ``BatchOutcome.failed`` (``{job.id: "could not index"}``) is recorded as this error."""


class LimiterExhaustedError(ErrandsError):
    """``limiter.acquire()`` found its limiter over the limit, and the job was snoozed by
    limiters ``max_snoozes`` times already: an ordinary failure (retried with backoff)."""


class JobNotFoundError(ErrandsError, LookupError):
    """No job with that id (never existed, destroyed, or its record expired)."""

    @classmethod
    def for_id(cls, job_id: str) -> JobNotFoundError:
        """The one answer for every lookup of an id without a job, whatever the reason: a job
        destroyed or deleted through the admin API leaves no tombstone (docs/client.md)."""
        return cls(
            f"no job {job_id!r}: never enqueued, destroyed or deleted (Client.destroy, "
            "delete_*), or it ended and its record expired"
        )


class JobChangedError(ErrandsError, ValueError):
    """An admin action built from a read of a job found the job changed since (edited, or
    retried by another call and dead again): it did nothing (a stale read moves nothing);
    look at the job again and retry the action."""


class UniqueLockHeldError(ErrandsError, ValueError):
    """An admin action would put a job of ``enqueue_unique`` back to wait (``reschedule`` or
    ``retry_dead_job`` of a dead or cancelled job) while another live job holds its lock: it
    did nothing (two jobs never wait with one lock); the job stays where it was."""


class DedupKeyHeldError(ErrandsError, ValueError):
    """An admin action would put a job enqueued with ``dedup=Dedup(...)`` back to wait
    (``reschedule`` or ``retry_dead_job`` of a dead or cancelled job) while another live job
    holds its dedup key: it did nothing (two jobs never hold one key); the job stays where it
    was. With ``rerun_latest`` the job waits as the rerun of a started holder instead, and is
    refused only while that holder waits unstarted or a rerun waits already. ``holder``: the id
    of the job holding the key (as read after the refusal; "" when it was gone by then)."""

    def __init__(self, message: str, holder: str = "") -> None:
        super().__init__(message)
        self.holder = holder


class JobFailedError(ErrandsError):
    """The job failed for good (it is in the dead set); ``error`` and ``traceback`` say why."""

    def __init__(self, job_id: str, error: str, traceback: str | None = None) -> None:
        super().__init__(f"job {job_id} failed: {error}")
        self.job_id = job_id
        self.error = error
        self.traceback = traceback


class JobCancelledError(ErrandsError):
    """The job was cancelled before it finished."""


class ScheduleNotFoundError(ErrandsError, LookupError):
    """No periodic schedule with that name."""


class PoolNotFoundError(ErrandsError, LookupError):
    """No running (registered) worker pool with that id (``Client.quiet_pool``)."""


class NotReplicatedError(ErrandsError):
    """An enqueue with ``wait_replicas`` was stored on the master but fewer replicas than asked
    confirmed it in time: a failover now could lose it. Retrying stores the job again."""


class UnknownJobError(ErrandsError, LookupError):
    """``Enqueuer(strict=True)``: no running pool serves this job name (a typo, or no worker
    deployed for it); the message names the ones served."""


class WorkflowError(ErrandsError, ValueError):
    """A workflow that cannot be stored or changed: a cycle, an unknown or repeated node, an
    invalid option; or a change to a run that no longer allows it (see docs/workflows.md)."""


class DependencyFailed(ErrandsError):
    """The outcome of a dependency that did not succeed, as ``job.dependency_results()``
    gives it (never raised by errands): ``node``, ``status`` (``failed`` or ``cancelled``) and
    ``error`` (the stored error: a dict whose ``error`` says what happened, or None)."""

    def __init__(self, node: str, status: str, error: object) -> None:
        message = error.get("error") if isinstance(error, dict) else None
        super().__init__(f"dependency {node} {status}" + (f": {message}" if message else ""))
        self.node = node
        self.status = status
        self.error = error

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DependencyFailed) and (self.node, self.status, self.error) == (
            other.node,
            other.status,
            other.error,
        )

    __hash__ = None  # type: ignore[assignment]


class WorkflowNotFoundError(NonRetryableError, LookupError):
    """No workflow run with that id (never stored, or its linger is over). A
    ``NonRetryableError``: raised in a handler (a callback reading the results of a run whose
    linger is over, a member waiting on an unknown run), the job goes straight to the dead set
    instead of spending its retries on a run that is gone (catch it and raise ``RetryLater`` to
    wait for a run not stored yet)."""
