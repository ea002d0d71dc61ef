"""A job destroyed (``Client.destroy``) or deleted (``delete_*``) through the admin API leaves no
tombstone: every lookup answers as for an id never enqueued (``job()`` None; ``result()``,
``cancel()`` and the other single-job calls ``JobNotFoundError``, saying an id may have been
destroyed or deleted; the dashboard's job page 404, or, after a ``delete_*``, the history
entry recording the deletion), and the id may be enqueued again, as BullMQ's ``job.remove()``
and Sidekiq's delete do. ``destroy`` keeps no history; ``delete_*`` records its ``deleted``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx
import pytest

import errands
from errands import Client, Enqueuer, JobNotFoundError
from tests.support.dashboard import http

Forget = Callable[[Client, str], Awaitable[bool]]


async def _destroy(client: Client, job_id: str) -> bool:
    return await client.destroy(job_id)


async def _delete_queued(client: Client, job_id: str) -> bool:
    return await client.delete_queued_job(job_id)


async def _cancel_then_destroy(client: Client, job_id: str) -> bool:
    assert await client.cancel(job_id) == "cancelled"
    return await client.destroy(job_id)


async def _cancel_then_delete(client: Client, job_id: str) -> bool:
    assert await client.cancel(job_id) == "cancelled"
    return await client.delete_cancelled_job(job_id)


async def _lookups(client: Client, web: httpx.AsyncClient, job_id: str) -> dict[str, object]:
    """What each lookup answers for ``job_id``."""
    seen: dict[str, object] = {"job": await client.job(job_id)}
    for what, call in (
        ("result", lambda: client.result(job_id, timeout=5)),
        ("cancel", lambda: client.cancel(job_id)),
        ("run_now", lambda: client.run_scheduled_now(job_id)),
        ("reschedule", lambda: client.reschedule(job_id, 0)),
        ("update", lambda: client.update_job(job_id, priority=1)),
    ):
        with pytest.raises(JobNotFoundError) as raised:
            await call()
        seen[what] = str(raised.value)
    page = await web.get(f"/api/jobs/{job_id}")
    seen["page"] = page.status_code
    seen["history"] = [a["status"] for a in page.json().get("attempts", [])]
    return seen


FORGOTTEN = "never enqueued, destroyed or deleted"


@pytest.mark.parametrize(
    "forget, history",
    [
        (_destroy, []),
        (_cancel_then_destroy, []),
        (_delete_queued, ["deleted"]),
        (_cancel_then_delete, ["cancelled", "deleted"]),
    ],
    ids=["destroy", "destroy-cancelled", "delete-queued", "delete-cancelled"],
)
async def test_a_forgotten_job_is_answered_as_one_never_enqueued(
    client: Client, enqueuer: Enqueuer, forget: Forget, history: list[str]
) -> None:
    async with http(errands.dashboard(client)) as web:
        never = await _lookups(client, web, "never")
        assert never["job"] is None and never["page"] == 404 and never["history"] == []
        for what in ("result", "cancel", "run_now", "reschedule", "update"):
            assert f"no job 'never': {FORGOTTEN}" in str(never[what]), never
        await enqueuer.enqueue("work", job_id="gone")
        assert await forget(client, "gone")
        seen = await _lookups(client, web, "gone")
        assert seen["job"] is None and seen["history"] == history
        assert seen["page"] == (404 if not history else 200)
        for what in ("result", "cancel", "run_now", "reschedule", "update"):
            assert str(seen[what]) == str(never[what]).replace("never", "gone", 1)
    again = await enqueuer.enqueue("work", job_id="gone")  # no tombstone: the id is free
    assert again is not None and not again.existed


async def test_a_waiter_of_a_job_destroyed_meanwhile_is_told_at_once(
    client: Client, enqueuer: Enqueuer
) -> None:
    """The ``deleted`` event ends the wait (no wait for the waiter's next look, a second on)."""
    job = await enqueuer.enqueue("work")
    assert job is not None
    waiter = asyncio.create_task(job.result(timeout=5))
    await asyncio.sleep(0.2)  # (subscribed: its first look found the job queued)
    loop = asyncio.get_running_loop()
    began = loop.time()
    assert await client.destroy(job.id)
    with pytest.raises(JobNotFoundError, match=FORGOTTEN):
        await waiter
    assert loop.time() - began < 0.5
