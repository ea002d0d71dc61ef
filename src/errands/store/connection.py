"""Creating Redis clients with timeouts that cannot hang, and errors that name the server."""

from __future__ import annotations

from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff as RedisBackoff

from ..errors import RedisUnavailableError
from .topology import connect_url, describe_client
from .urls import redact_url

__all__ = ["BROKEN", "REDIS_ERRORS", "as_read_only", "connect", "redact_url"]

# Errors that mean "Redis is not answering right now" (as opposed to a bug or bad input).
REDIS_ERRORS: tuple[type[BaseException], ...] = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.BusyLoadingError,
    redis_errors.TryAgainError,
    # a cluster during a failover (the slot's master is down or not yet replaced), or none of
    # its nodes reachable (RedisClusterException, also the base of SlotNotCoveredError)
    redis_errors.ClusterError,
    redis_errors.RedisClusterException,
    ConnectionError,
    TimeoutError,
    OSError,
)


# a connection errands holds broke or timed out: its call goes the general way, which reconnects
# and retries (the hot calls, the hand-off read, the one-job and coalesced enqueues fall back)
BROKEN: tuple[type[BaseException], ...] = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    OSError,
)

# a write a replica refused inside a script: Redis 7 and Valkey reply READONLY itself, Redis < 7
# a script error that quotes it ("ERR Error running script (call to f_...): ... -READONLY ...")
_SCRIPT_READ_ONLY = "READONLY You can't write against a read only replica"


def as_read_only(exc: BaseException) -> BaseException:
    """``exc``, or the ``ReadOnlyError`` it means (a master demoted: see _SCRIPT_READ_ONLY)."""
    if type(exc) is redis_errors.ResponseError and _SCRIPT_READ_ONLY in str(exc):
        return redis_errors.ReadOnlyError(*exc.args)
    return exc


def client_options(**overrides: Any) -> dict[str, Any]:
    """Defaults for every client errands creates: bounded waits everywhere, keepalive on."""
    options: dict[str, Any] = {
        "socket_connect_timeout": 5.0,
        "socket_timeout": 15.0,
        "socket_keepalive": True,
        "health_check_interval": 15,
        "retry": Retry(RedisBackoff(cap=1.0, base=0.05), retries=3),
        # RuntimeError: under uvloop, writing to a connection the peer has reset raises
        # "unable to perform operation on <TCPTransport closed=True ...>" (uvloop issue #506)
        # before anything is sent; the retry reconnects and sends the command once
        "retry_on_error": [redis_errors.ConnectionError, redis_errors.TimeoutError, RuntimeError],
        "decode_responses": False,
    }
    options.update(overrides)
    return options


def connect(url: str, **overrides: Any) -> Redis:
    """An asyncio client for ``url`` (``redis://``, ``rediss://``, ``unix://``,
    ``redis+cluster://``, ``redis+sentinel://``: see :mod:`errands.topology`); a malformed URL
    raises naming it (password hidden)."""
    return connect_url(url, client_options(), **overrides)


def describe(redis: Any) -> str:
    """A URL-like description of the server a client talks to, for error messages."""
    return describe_client(redis)


async def check(redis: Redis, url: str | None = None) -> None:
    """PING the server; raise ``RedisUnavailableError`` naming it when it does not answer."""
    try:
        await redis.ping()
    except REDIS_ERRORS as exc:
        where = redact_url(url) if url else describe(redis)
        raise RedisUnavailableError(f"cannot reach Redis at {where}: {exc}") from exc
    except redis_errors.ResponseError as exc:  # refused while connecting: a bad DB index...
        where = redact_url(url) if url else describe(redis)
        raise RedisUnavailableError(f"cannot use Redis at {where}: {exc}") from exc
