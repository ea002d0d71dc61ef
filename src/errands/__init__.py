"""errands: asyncio-native background jobs backed by Redis."""

import typing

from .admin.client import Client
from .admin.jobinfo import HistoryEntry, JobInfo, JobStatus, Page, PoolInfo, QueueInfo, WorkerInfo
from .backoff import Backoff, ExponentialBackoff, FixedBackoff, LinearBackoff, RetryOptions
from .clock import Clock, FakeClock, SystemClock
from .dedup import Dedup
from .enqueuer import Enqueuer
from .errors import (
    DependencyFailed,
    ErrandsError,
    JobArgumentError,
    JobCancelledError,
    JobFailedError,
    JobNotFoundError,
    NonRetryableError,
    RedisUnavailableError,
    RegistrationError,
    RetryLater,
    ScheduleNotFoundError,
    UnknownJobError,
    WorkflowError,
    WorkflowNotFoundError,
)
from .handlers import current_job
from .job import DedupOutcome, Job
from .limits import Concurrency, Rate
from .longwork.batch import BatchOutcome
from .middleware import Middleware, Next
from .periodic.listing import ScheduleInfo
from .periodic.store import PeriodicSchedule
from .serialization import JSONSerializer, PayloadTooLargeError, SerializationError, Serializer
from .sync import SyncClient, SyncEnqueuer
from .typed import JobFunction
from .worker.pool import WorkerPool
from .workflows import Workflow, WorkflowRun, WorkflowStatus, chain, chord, group

if typing.TYPE_CHECKING:
    from .web import dashboard

__version__ = "0.1.0"

__all__ = [
    "Backoff",
    "BatchOutcome",
    "Client",
    "Clock",
    "Concurrency",
    "Dedup",
    "DedupOutcome",
    "DependencyFailed",
    "Enqueuer",
    "ErrandsError",
    "ExponentialBackoff",
    "FakeClock",
    "FixedBackoff",
    "HistoryEntry",
    "JSONSerializer",
    "Job",
    "JobArgumentError",
    "JobCancelledError",
    "JobFailedError",
    "JobFunction",
    "JobInfo",
    "JobNotFoundError",
    "JobStatus",
    "LinearBackoff",
    "Middleware",
    "Next",
    "NonRetryableError",
    "Page",
    "PayloadTooLargeError",
    "PeriodicSchedule",
    "PoolInfo",
    "QueueInfo",
    "Rate",
    "RedisUnavailableError",
    "RegistrationError",
    "RetryLater",
    "RetryOptions",
    "ScheduleInfo",
    "ScheduleNotFoundError",
    "SerializationError",
    "Serializer",
    "SyncClient",
    "SyncEnqueuer",
    "SystemClock",
    "UnknownJobError",
    "WorkerInfo",
    "WorkerPool",
    "Workflow",
    "WorkflowError",
    "WorkflowNotFoundError",
    "WorkflowRun",
    "WorkflowStatus",
    "__version__",
    "chain",
    "chord",
    "current_job",
    "dashboard",
    "group",
]


def __getattr__(name: str) -> typing.Any:
    if name == "dashboard":  # imported lazily: it needs the optional 'dashboard' extra
        from .web import dashboard

        return dashboard
    raise AttributeError(f"module 'errands' has no attribute {name!r}")
