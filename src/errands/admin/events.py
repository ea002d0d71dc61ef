"""Job lifecycle events over pub/sub, and waiting for a job's result without polling.

Scripts publish a job's events only where someone listens (store/lua/lib/events.lua): on the
job's own channel while a waiter watches it, on the namespace's channel while a stream listens;
the hub (``hub.py``) keeps the marks in the ``listening`` HASH.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from ..checks import seconds
from ..errors import (
    JobCancelledError,
    JobFailedError,
    JobNotFoundError,
    RedisUnavailableError,
)
from ..store.connection import REDIS_ERRORS, describe
from ..store.keys import Keys
from ..store.topology import connection_option
from .hub import RESUBSCRIBED, EventHub, Subscriber
from .jobinfo import decode_json
from .records import read_done, record_of
from .workflows import member_state

__all__ = ["ENDINGS", "EventStream", "recheck_period", "wait_result"]

ENDINGS = ("finished", "dead", "dropped", "cancelled", "deleted")
RECHECKS_PER_SECOND = 200  # at most, over all the waiters of one hub


class EventStream:
    """Job lifecycle events as an async iterator (see :meth:`errands.Client.events`).

    ``async with client.events() as events:`` subscribes before its body runs, so no event of
    what the body does is missed; ``async for event in events`` then yields them. Iterating
    without ``async with`` subscribes at the first ``__anext__``; ``aclose()`` unsubscribes.
    Through a Redis restart the stream resubscribes (events published meanwhile are missed);
    Redis unreachable for the hub's ``outage_limit`` raises ``RedisUnavailableError``.
    """

    def __init__(self, hub: EventHub) -> None:
        self._hub = hub
        self._subscription: Any = None
        self._sub: Subscriber | None = None
        self._closed = False

    async def start(self) -> EventStream:
        """Subscribe now (idempotent)."""
        if self._sub is None and not self._closed:
            subscription = self._hub.subscribe(None)
            self._sub = await subscription.__aenter__()
            self._subscription = subscription
        return self

    async def aclose(self) -> None:
        self._closed = True
        subscription, self._subscription, self._sub = self._subscription, None, None
        if subscription is not None:
            await subscription.__aexit__(None, None, None)

    async def __aenter__(self) -> EventStream:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> dict[str, Any]:
        """The next event: ``{"event": "enqueued"|"started"|"finished"|"failed"|"dead"|
        "dropped"|"cancelled"|"deleted"|"progress"|"checkpoint", "id": ..., "name": ...}``
        (failed, dead and dropped carry the ``error``; deleted a ``reason``; progress the
        ``checkin``; checkpoint, of an iterable job, the ``checkpoint``)."""
        await self.start()
        while self._sub is not None:
            event = await self._sub.get(timeout=1.0)
            if event is None:
                self._hub.check_outage()
            elif event is not RESUBSCRIBED:
                return event
        raise StopAsyncIteration


async def _outcome(redis: Any, keys: Keys, job_id: str) -> tuple[bool, Any]:
    """(True, result) when the job ended; raises when it failed or was cancelled. One round
    trip for a job (another for a workflow member no queue holds: waiting, or cancelled)."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.get(keys.done(job_id))
        pipe.zscore(keys.dead, job_id)
        pipe.hget(keys.errors, job_id)
        pipe.hexists(keys.jobs, job_id)
        pipe.zscore(keys.cancelled, job_id)
        pipe.hget(keys.workflow_of, job_id)  # (a workflow member's run)
        record, dead, error, pending, cancelled, run = await pipe.execute()
    if record is not None:
        # (one that names its attempt is read from the history)
        rec = record_of(record, job_id) or await read_done(redis, keys, job_id)
        if rec is None:
            raise JobNotFoundError(f"job {job_id} ended but its record is unreadable or gone")
        if rec.get("status") == "cancelled":
            raise JobCancelledError(f"job {job_id} was cancelled")
        return True, rec.get("result")
    if cancelled is not None:  # also when a reaper cancelled it (no record is written then)
        raise JobCancelledError(f"job {job_id} was cancelled")
    if dead is not None:
        err = decode_json(error) or {}
        raise JobFailedError(job_id, err.get("error", "failed"), err.get("traceback"))
    if pending:
        return False, None
    # a workflow member waiting for its dependencies is held by its run, not in ``jobs``
    member = await member_state(redis, keys, job_id, run)
    if member == "cancelled":  # (ended without running: no record of it but its run's)
        raise JobCancelledError(f"job {job_id} was cancelled (so its workflow run records it)")
    if member is None:
        raise JobNotFoundError.for_id(job_id)
    return False, None


def recheck_period(waiters: int) -> float:
    """Seconds between two looks at a waiting job's stored state, whatever the event traffic
    (a job may end without an event, or while the subscription was down): 1 s, longer when
    so many wait that the looks of all of them would pass ``RECHECKS_PER_SECOND``; jittered."""
    return max(1.0, waiters / RECHECKS_PER_SECOND) * random.uniform(1.0, 1.25)


async def wait_result(hub: EventHub, job_id: str, timeout: float | None) -> Any:
    """Wait for a job's result (see ``Job.result``). A ``timeout`` that is not None must be a
    number of seconds >= 0 (a NaN would never time out). However small the timeout (0 too),
    the job's stored state is looked at once: when no look answered before the time was up,
    or an end's event was seen, one more is made then (:func:`_last_look`), so a job that
    ended answers."""
    hub.keys.done(job_id)  # (checks the id: a str without braces)
    if timeout is not None:
        timeout = seconds("timeout", timeout)
    state = _Seen()
    # (the deadline too: a cancel of asyncio.timeout's lost in redis-py, whose sends go by
    # asyncio.wait_for, which on Python 3.11 drops one that comes as the send completes)
    deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
    try:
        if timeout != 0:  # (0: the look alone, no subscription)
            async with asyncio.timeout(timeout), hub.subscribe(job_id) as sub:
                return await _wait(hub, job_id, sub, state, deadline)
    except TimeoutError:
        if timeout is None:
            raise
    assert timeout is not None
    if state.error is not None:  # (the wait's end came as its time did: the timeout fired
        raise state.error  # while it unsubscribed, after its answer)
    if state.ended:
        return state.result
    # no look answered in time (subscribing took it, say), or the look an end's event woke was
    # still out: one now (a job whose end was seen is never said not to have ended)
    if not state.pending or state.event in ENDINGS:
        done, result = await _last_look(hub, job_id, state)
        if done:
            return result
    raise TimeoutError(
        f"waited {timeout:g}s for the result of job {job_id}: it has not ended ({state.describe()})"
    )


async def _last_look(hub: EventHub, job_id: str, seen: _Seen) -> tuple[bool, Any]:
    """``_outcome`` once more, after the caller's timeout passed with no look answered (so
    that ``result(timeout=0)`` answers for a job that ended) or after an end's event, bounded
    by the client's socket timeout (15 s without one): (True, result) for a job that ended,
    (False, None) for one that has not; it raises as ``_outcome`` for a failed, cancelled or
    unknown job, and ``RedisUnavailableError`` when Redis does not answer (nothing says
    whether it ended)."""
    bound = connection_option(hub.redis, "socket_timeout") or 15.0
    try:
        async with asyncio.timeout(bound):
            done, result = await _outcome(hub.redis, hub.keys, job_id)
    except REDIS_ERRORS as exc:  # (TimeoutError too: the bound's)
        raise RedisUnavailableError(
            f"cannot reach Redis at {describe(hub.redis)} to look at job {job_id}: {exc!r}"
        ) from exc
    seen.pending = True
    return done, result


class _Seen:
    """What a waiter saw of its job, for the TimeoutError's message."""

    def __init__(self) -> None:
        self.event: str | None = None
        self.pending = False
        self.ended = False  # (and its result, or the error it raised: see wait_result)
        self.result: Any = None
        self.error: BaseException | None = None

    def describe(self) -> str:
        if self.event is not None:
            return f"last event seen: {self.event}"
        return "it is waiting or running" if self.pending else "no event of it seen"


async def _wait(
    hub: EventHub, job_id: str, sub: Subscriber, seen: _Seen, deadline: float | None
) -> Any:
    try:
        return await _until_end(hub, job_id, sub, seen, deadline)
    except (JobFailedError, JobCancelledError, JobNotFoundError) as exc:
        sub.ended = True
        seen.error = exc
        raise


async def _until_end(
    hub: EventHub, job_id: str, sub: Subscriber, seen: _Seen, deadline: float | None
) -> Any:
    loop = asyncio.get_running_loop()
    while True:
        try:
            done, result = await _outcome(hub.redis, hub.keys, job_id)
        except REDIS_ERRORS as exc:
            hub.failed(exc)  # raises once Redis has been unreachable for too long
            done, result = False, None
        else:
            hub.answered()
            seen.pending = True
        if done:
            sub.ended = True  # its end was published: its mark can go (hub.py)
            seen.ended, seen.result = True, result
            return result
        if deadline is not None and loop.time() >= deadline:
            raise TimeoutError  # (wait_result's message)
        look = loop.time() + recheck_period(hub.subscribers)
        if deadline is not None:
            look = min(look, deadline)
        while (left := look - loop.time()) > 0:
            event = await sub.get(timeout=left)
            if event is None or event is RESUBSCRIBED:
                break  # look again: on a timer, and after a resubscription
            seen.event = str(event.get("event"))
            error = event.get("error")
            if event.get("event") == "dropped" and isinstance(error, dict):
                # failed for good and dropped (skip_dead): nothing is left to look up
                raise JobFailedError(
                    job_id, str(error.get("error", "failed")), error.get("traceback")
                )
            if event.get("event") in ENDINGS:
                break
