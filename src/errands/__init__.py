"""errands: asyncio-native background jobs backed by Redis.

The names of the admin client, the sync wrappers, the schedule listing and the dashboard are
imported on first use (``__getattr__`` below): a process that only enqueues or works jobs does
not load them.
"""

import importlib
import typing

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
from .periodic.store import PeriodicSchedule
from .serialization import JSONSerializer, PayloadTooLargeError, SerializationError, Serializer
from .typed import JobFunction
from .worker.pool import WorkerPool
from .workflows import Workflow, WorkflowRun, WorkflowStatus, chain, chord, group

if typing.TYPE_CHECKING:
    from .admin.client import Client
    from .periodic.listing import ScheduleInfo
    from .sync import SyncClient, SyncEnqueuer
    from .web import dashboard

# name -> module (relative to this package) that defines it, imported on first access
_LAZY = {
    "Client": ".admin.client",
    "ScheduleInfo": ".periodic.listing",
    "SyncClient": ".sync",
    "SyncEnqueuer": ".sync",
    "dashboard": ".web",  # needs the optional 'dashboard' extra
}

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
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'errands' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
