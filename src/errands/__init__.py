"""errands: asyncio-native background jobs backed by Redis."""

from .backoff import Backoff, ExponentialBackoff, FixedBackoff, LinearBackoff, RetryOptions
from .client import Client
from .clock import Clock, FakeClock, SystemClock
from .enqueuer import Enqueuer
from .errors import (
    ErrandsError,
    JobArgumentError,
    NonRetryableError,
    RedisUnavailableError,
    RegistrationError,
    RetryLater,
)
from .job import Job
from .middleware import Middleware, Next
from .pool import WorkerPool
from .serialization import JSONSerializer, SerializationError, Serializer

__version__ = "0.1.0"

__all__ = [
    "Backoff",
    "Client",
    "Clock",
    "Enqueuer",
    "ErrandsError",
    "ExponentialBackoff",
    "FakeClock",
    "FixedBackoff",
    "JSONSerializer",
    "Job",
    "JobArgumentError",
    "LinearBackoff",
    "Middleware",
    "Next",
    "NonRetryableError",
    "RedisUnavailableError",
    "RegistrationError",
    "RetryLater",
    "RetryOptions",
    "SerializationError",
    "Serializer",
    "SystemClock",
    "WorkerPool",
    "__version__",
]
