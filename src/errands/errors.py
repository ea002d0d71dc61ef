"""Exceptions raised by errands, and the ones handlers raise to steer a job."""

from __future__ import annotations

__all__ = [
    "ErrandsError",
    "JobArgumentError",
    "NonRetryableError",
    "RedisUnavailableError",
    "RegistrationError",
    "RetryLater",
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

    >>> raise RetryLater(30)   # snooze for 30 seconds
    """

    def __init__(self, delay: float = 0.0, reason: str = "") -> None:
        if delay < 0:
            raise ValueError("RetryLater delay must be >= 0")
        super().__init__(reason or f"retry later, in {delay:g}s")
        self.delay = float(delay)
