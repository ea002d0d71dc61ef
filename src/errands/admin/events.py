"""Job lifecycle events over pub/sub, and waiting for a job's result without polling.

Scripts publish events only while the ``listening`` key exists; a listener keeps it alive.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import orjson
from redis.asyncio import Redis

from ..aio import cancel_and_wait
from ..errors import JobCancelledError, JobFailedError, JobNotFoundError
from ..store.keys import Keys
from .jobinfo import decode_json

__all__ = ["EventStream", "listen", "wait_result"]

LISTEN_TTL_MS = 30_000


async def _keep_listening(redis: Redis, keys: Keys) -> None:
    while True:
        await redis.set(keys.listening, b"1", px=LISTEN_TTL_MS)
        await asyncio.sleep(LISTEN_TTL_MS / 3000)


@contextlib.asynccontextmanager
async def _subscription(redis: Redis, keys: Keys) -> AsyncIterator[Any]:
    await redis.set(keys.listening, b"1", px=LISTEN_TTL_MS)
    keeper = asyncio.create_task(_keep_listening(redis, keys))
    try:
        async with redis.pubsub() as pubsub:
            await pubsub.subscribe(keys.events_channel)
            # wait for the confirmation: only then is every later event sure to arrive
            for _ in range(10):
                message = await pubsub.get_message(timeout=1.0)
                if message is not None and message.get("type") in ("subscribe", b"subscribe"):
                    break
            yield pubsub
    finally:
        # cancel until done: Python 3.11's wait_for (in redis-py) can swallow one cancel
        await cancel_and_wait([keeper])


class EventStream:
    """Job lifecycle events as an async iterator (see :meth:`errands.Client.events`).

    ``async with client.events() as events:`` subscribes before its body runs, so no event of
    what the body does is missed; ``async for event in events`` then yields them. Iterating
    without ``async with`` subscribes at the first ``__anext__``; ``aclose()`` unsubscribes.
    """

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._gen = listen(redis, keys, ready=True)
        self._started = False

    async def start(self) -> EventStream:
        """Subscribe now (idempotent)."""
        if not self._started:
            await anext(self._gen)  # the readiness marker
            self._started = True
        return self

    async def aclose(self) -> None:
        await self._gen.aclose()

    async def __aenter__(self) -> EventStream:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> dict[str, Any]:
        await self.start()
        return await anext(self._gen)


async def listen(
    redis: Redis, keys: Keys, ready: bool = False
) -> AsyncGenerator[dict[str, Any], None]:
    """Yield lifecycle events: ``{"event": "enqueued"|"started"|"finished"|"failed"|"dead"|
    "dropped"|"cancelled"|"progress"|"checkpoint", "id": ..., "name": ...}`` (failed, dead and
    dropped carry the ``error``; progress the ``checkin``; checkpoint, of an iterable job, the
    ``checkpoint``). With ``ready``, first yields ``{}`` once
    subscribed."""
    async with _subscription(redis, keys) as pubsub:
        if ready:
            yield {}
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
            if message is None:
                continue
            event = decode_json(message["data"])
            if isinstance(event, dict):
                yield event


async def _outcome(redis: Redis, keys: Keys, job_id: str) -> tuple[bool, Any]:
    """(True, result) when the job ended; raises when it failed or was cancelled."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.get(keys.done(job_id))
        pipe.zscore(keys.dead, job_id)
        pipe.hget(keys.errors, job_id)
        pipe.hexists(keys.jobs, job_id)
        pipe.zscore(keys.cancelled, job_id)
        record, dead, error, pending, cancelled = await pipe.execute()
    if record is not None:
        rec = orjson.loads(record)
        if rec.get("status") == "cancelled":
            raise JobCancelledError(f"job {job_id} was cancelled")
        return True, rec.get("result")
    if cancelled is not None:  # also when a reaper cancelled it (no record is written then)
        raise JobCancelledError(f"job {job_id} was cancelled")
    if dead is not None:
        err = decode_json(error) or {}
        raise JobFailedError(job_id, err.get("error", "failed"), err.get("traceback"))
    if not pending:
        raise JobNotFoundError(f"job {job_id} does not exist or its result expired")
    return False, None


async def wait_result(redis: Redis, keys: Keys, job_id: str, timeout: float | None) -> Any:
    """Wait for a job's result (see ``Job.result``)."""
    async with asyncio.timeout(timeout), _subscription(redis, keys) as pubsub:
        while True:
            done, result = await _outcome(redis, keys, job_id)
            if done:
                return result
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is None:
                    break  # re-check now and then: an event may be missed around a reconnect
                event = decode_json(message["data"])
                if not isinstance(event, dict) or event.get("id") != job_id:
                    continue
                error = event.get("error")
                if event.get("event") == "dropped" and isinstance(error, dict):
                    # failed for good and dropped (skip_dead): nothing is left to look up
                    raise JobFailedError(
                        job_id, str(error.get("error", "failed")), error.get("traceback")
                    )
                if event.get("event") in ("finished", "dead", "dropped", "cancelled"):
                    break
