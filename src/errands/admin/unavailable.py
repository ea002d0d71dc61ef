"""``RedisUnavailableError`` from every public coroutine method of the Client, as from the
Enqueuer and the WorkerPool: a redis-py connection or timeout error becomes one that names the
server (password hidden)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ..errors import RedisUnavailableError
from ..store.connection import REDIS_ERRORS, describe

__all__ = ["reports_unavailable"]

C = TypeVar("C", bound=type)
_KEEP: tuple[type[BaseException], ...] = (RedisUnavailableError, TimeoutError)


def reports_unavailable(cls: C) -> C:
    """Wrap every public ``async def`` of ``cls`` (inherited ones too, ``aclose`` excepted)."""
    for name, method in inspect.getmembers(cls, inspect.iscoroutinefunction):
        if not name.startswith("_") and name != "aclose":
            setattr(cls, name, _wrapped(method))
    return cls


def _wrapped(method: Callable[..., Coroutine[Any, Any, Any]]) -> Any:
    @functools.wraps(method)
    async def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await method(self, *args, **kwargs)
        except _KEEP:  # already says which server; or result()'s own timeout
            raise
        except REDIS_ERRORS as exc:
            where = getattr(self, "where", None) or describe(self.redis)
            raise RedisUnavailableError(f"cannot reach Redis at {where}: {exc}") from exc

    return call
