"""Bulk actions over many jobs: a bounded number in flight at once, window after window.

The Client's ``retry_all_dead_jobs``/``delete_all_dead_jobs`` and the dashboard's "retry all",
"delete all", "clear queue" and selected-jobs actions run their one-job action on each id of a
snapshot through :func:`act_on_each`: the ids in windows of ``WINDOW``, in the snapshot's order
(each window's actions run together, the next window starts when they all ended), so at most a
window of coroutines exists at a time and each id is acted on once.

Each action in flight may hold a connection of the client's pool: a window is at most half the
pool's ``max_connections`` (redis-py's plain pool raises past it, rather than wait).

A window in which every action failed to reach Redis (a connection or timeout error) starts no
more: the rest would fail alike. A window in which every action raised for its own id (an id
refused, say) does not stop the next ones."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from ..errors import RedisUnavailableError
from ..store.coalescer import server_refusal
from ..store.connection import REDIS_ERRORS
from ..store.keys import Keys
from ..store.topology import connection_option, is_cluster
from .inputs import checked_id

__all__ = ["WINDOW", "accepted_id", "act_on_each", "each_dead", "gathered", "window_for"]

T = TypeVar("T")
R = TypeVar("R")

WINDOW = 64
_UNREACHABLE: tuple[type[BaseException], ...] = (*REDIS_ERRORS, RedisUnavailableError)


def window_for(redis: Any) -> int:
    """``WINDOW``, or half the connections ``redis``'s pool allows when that is fewer (on a
    cluster: the pool of each node, as every key of a namespace is on one node)."""
    if is_cluster(redis):
        most = connection_option(redis, "max_connections")
    else:
        most = getattr(getattr(redis, "connection_pool", None), "max_connections", None)
    if isinstance(most, int) and not isinstance(most, bool) and most > 0:
        return max(1, min(WINDOW, most // 2))
    return WINDOW


async def _window(items: Sequence[T], fn: Callable[[T], Awaitable[R]]) -> list[R | Exception]:
    """``fn`` on each item together; the results in order, an ``Exception`` in its item's place.
    A cancellation (or another BaseException) is raised once the whole window has ended."""
    results = await asyncio.gather(*(fn(item) for item in items), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, Exception):
            raise result
    return results  # type: ignore[return-value]  # (BaseExceptions raised above)


async def gathered(
    items: Sequence[T], fn: Callable[[T], Awaitable[R]], window: int = WINDOW
) -> list[R]:
    """``fn`` on each item, ``window`` at a time; the results in the items' order. The first
    error (in the items' order) is raised after the window it happened in ended (no later
    window starts)."""
    out: list[R] = []
    for start in range(0, len(items), window):
        for result in await _window(items[start : start + window], fn):
            if isinstance(result, Exception):
                raise result
            out.append(result)
    return out


async def act_on_each(
    ids: Sequence[T], action: Callable[[T], Awaitable[bool]], window: int = WINDOW
) -> int:
    """``action`` once on each id (``window`` at a time, in the ids' order); how many returned
    true. An action that raises does not stop the others: every id is still acted on, then the
    first error (in the ids' order) is raised, with a note of how many ids were acted on and
    how many failed. Only after a window in which every action failed for the server's sake
    (each raised a connection or timeout error, or a refusal of the server's state: READONLY,
    OOM, MISCONF, NOPERM; ``server_refusal``) are no more windows started."""
    acted, failed, first = 0, 0, None
    started = 0
    for start in range(0, len(ids), window):
        part = ids[start : start + window]
        started += len(part)
        results = await _window(part, action)
        errors = [r for r in results if isinstance(r, Exception)]
        acted += sum(1 for r in results if not isinstance(r, Exception) and r)
        failed += len(errors)
        first = first or (errors[0] if errors else None)
        if len(errors) == len(part) and all(_server_wide(e) for e in errors):
            break
    if first is not None:
        note = f"bulk action: {acted} of {len(ids)} done, {failed} failed"
        if started < len(ids):
            note += f", {len(ids) - started} not tried"
            note += " (Redis unreachable or refusing: every action of a window failed)"
        first.add_note(note)
        raise first
    return acted


def accepted_id(keys: Keys, member: bytes | str) -> str | None:
    """A set's ``member`` as a job id, or None when errands never accepts it as one: not
    UTF-8, or refused by the id check (``checked_id``: empty, braces, newlines, NUL)."""
    try:
        return checked_id(keys, member.decode() if isinstance(member, bytes) else member)
    except (UnicodeDecodeError, ValueError, TypeError):
        return None


async def each_dead(
    redis: Any, keys: Keys, action: Callable[[str], Awaitable[bool]], *, remove_others: bool
) -> int:
    """``action`` once on each job id in the dead set now (one snapshot, bounded by
    ``dead_max_jobs``; oldest first, as :func:`act_on_each`); how many returned true.

    A member that is not an id errands accepts (:func:`accepted_id`) is skipped, or, with
    ``remove_others``, removed from the set itself (a ZREM of the member as stored) and
    counted: enqueue refuses such an id, so no job, record or history of it exists."""
    items: list[tuple[str | None, bytes | str]] = []
    for member in await redis.zrange(keys.dead, 0, -1):
        job_id = accepted_id(keys, member)
        if job_id is not None or remove_others:
            items.append((job_id, member))

    async def act(item: tuple[str | None, bytes | str]) -> bool:
        job_id, member = item
        if job_id is not None:
            return await action(job_id)
        return bool(await redis.zrem(keys.dead, member))

    return await act_on_each(items, act, window_for(redis))


def _server_wide(exc: Exception) -> bool:
    """Whether ``exc`` says the server takes no call now (unreachable, or refusing every call
    for its state), not that one job's call was refused."""
    return isinstance(exc, _UNREACHABLE) or server_refusal(exc)
