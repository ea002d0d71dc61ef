"""The message an action's error is shown with (a flash message, or ``error`` under /api): the
error's own text, then its notes (a bulk action's "bulk action: 299 of 300 done, 1 failed",
admin/bulk.py), never a traceback; what a cancel's answer means; the hint that a new schedule's
job name is served by no running pool."""

from __future__ import annotations

from redis.exceptions import ResponseError

from ..admin.client import Client
from ..store.connection import REDIS_ERRORS
from ..store.served import served_names, unserved_message

__all__ = ["FLASH_MOST", "cancel_message", "error_message", "served_or_none", "unserved_hint"]

FLASH_MOST = 300  # characters a flash message keeps (Renderer.redirect)

# the served names' read failing leaves the hint out: a key of another type, Redis not answering
_UNREAD: tuple[type[BaseException], ...] = (ResponseError, *REDIS_ERRORS)


def error_message(exc: BaseException, most: int | None = None) -> str:
    """``exc``'s message, capitalized, with its notes after it in parentheses. With ``most``,
    the error's own text is shortened (ending in "...") so the notes fit in ``most``
    characters whole."""
    text = str(exc.args[0]) if len(exc.args) == 1 else str(exc)
    text = text[:1].upper() + text[1:]
    notes = [note for note in getattr(exc, "__notes__", ()) if isinstance(note, str)]
    after = f" ({'; '.join(notes)})" if notes else ""
    if most is not None and len(text) + len(after) > most:
        room = max(0, most - len(after) - 3)
        text = text[:room] + "..."
    return text + after


# what Client.cancel's answers mean to the person who pressed Cancel
CANCEL_SAID = {
    "cancelled": "cancelled, it will not run",
    # (one answer for a live pool and a dead one not yet reaped: the reaper cancels its job)
    "running": (
        "running; cancel requested, it will not be retried: its pool cancels it within about a "
        "second or, if that pool is gone, the reaper does when it takes the pool's jobs back"
    ),
    "dead": "not cancelled: it is dead already",
    "already": "not cancelled: it was cancelled already",
    "finished": "not cancelled: it has finished already",
    "ended": "not cancelled: it has ended already (no record of how is kept)",
}


def cancel_message(outcome: str) -> str:
    return CANCEL_SAID.get(outcome, "cancel answered " + outcome)


async def served_or_none(client: Client) -> set[str] | None:
    """The job names the running pools serve; None when a key of the pools has another type or
    Redis fails to answer (a hint: the page or action that asks goes on without it, a schedule
    just stored is said to be added)."""
    try:
        return await served_names(client.redis, client.keys)
    except _UNREAD:
        return None


async def unserved_hint(client: Client, job_name: str) -> str:
    """``, but no running pool serves job name ...: ...`` when none does, else ``""`` (also
    when the running pools' names could not be read)."""
    served = await served_or_none(client)
    if served is None or job_name in served:
        return ""
    problem = unserved_message(job_name, served, client.keys.namespace)
    return f", but {problem}: its jobs wait until a pool serves it"
