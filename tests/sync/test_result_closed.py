"""``await job.result()`` of a SyncEnqueuer's job (Portal.run_async) when the SyncEnqueuer is
closed meanwhile: the awaiting task, which nobody cancelled, gets the same error a blocking
caller gets (``concurrent.futures.CancelledError``, an Exception, as when it waited through a
thread) and is not itself ended as cancelled. (review1: it got ``asyncio.CancelledError``, so
it ended as if cancelled: a TaskGroup took that silently, ``except Exception`` missed it.)"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time

import pytest

from errands import SyncEnqueuer


async def test_close_while_a_result_is_awaited_is_an_error_not_a_cancel_of_the_caller(
    redis_url: str, namespace: str
) -> None:
    sync = SyncEnqueuer(redis_url, namespace=namespace)
    try:
        job = sync.enqueue("never_run")
        assert job is not None
        outcome: list[BaseException] = []

        async def caller() -> None:
            try:
                await job.result(timeout=8)
            except Exception as exc:  # (what a request handler catches)
                outcome.append(exc)

        waiting = asyncio.create_task(caller())
        deadline = time.monotonic() + 5
        while not sync._portal._calls and time.monotonic() < deadline:  # (its wait started)
            await asyncio.sleep(0.001)
        assert sync._portal._calls
        await asyncio.to_thread(sync.close)
        await asyncio.wait_for(waiting, 5)  # (not raised: the caller saw an error)
        assert not waiting.cancelled()
        assert len(outcome) == 1 and isinstance(outcome[0], concurrent.futures.CancelledError)
    finally:
        sync.close()


async def test_cancelling_the_caller_still_raises_cancelled_error(
    redis_url: str, namespace: str
) -> None:
    """(the other way round, kept: the caller cancelled gets asyncio.CancelledError)"""
    sync = SyncEnqueuer(redis_url, namespace=namespace)
    try:
        job = sync.enqueue("never_run")
        assert job is not None
        waiting = asyncio.create_task(job.result(timeout=8))
        deadline = time.monotonic() + 5
        while not sync._portal._calls and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert waiting.cancelled()
    finally:
        sync.close()
