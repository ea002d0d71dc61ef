"""The blocking API for sync code: ``SyncEnqueuer`` and ``SyncClient`` (each runs its async
counterpart on an event loop in a daemon thread of its own). May import the user-facing modules
and ``admin/``; nothing below imports it."""

from .client import SyncClient
from .enqueuer import SyncEnqueuer

__all__ = ["SyncClient", "SyncEnqueuer"]
