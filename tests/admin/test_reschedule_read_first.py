"""``Client.reschedule``: a job changed between the call's look-up (``Client.job``, which picks
the set it moves the job from and whether to renumber it) and its move is not moved either:
the envelope the move checks is the one read first, before the look-up. (review1: it was read
after the look-up, so a change landing between the two was moved anyway: a dead job retried by
another call and dead again ran a third time; an edit was moved, JobChangedError unsaid.)"""

from __future__ import annotations

import time
from typing import Any

import pytest
from redis.asyncio import Redis

from errands import Client, Enqueuer
from errands.errors import JobChangedError
from tests.admin.test_reschedule_changed import plain_job_in
from tests.support.invariants import assert_invariants


def after_look_up(client: Client, change: Any) -> None:
    """``change()`` runs once, right after the reschedule's first ``Client.job`` look-up."""
    look_up = client.job
    pending = [change]

    async def then_change(job_id: str) -> Any:
        info = await look_up(job_id)
        if pending:
            await pending.pop()()
        return info

    client.job = then_change  # type: ignore[method-assign]


@pytest.mark.parametrize("status", ["dead", "scheduled", "retrying"])
@pytest.mark.parametrize("at", [0.0, 600.0])
async def test_a_job_edited_right_after_the_look_up_is_not_rescheduled(
    redis: Redis, namespace: str, client: Client, enqueuer: Enqueuer, status: str, at: float
) -> None:
    job_id = await plain_job_in(redis, enqueuer, status)
    other = Client(redis, namespace=namespace)

    async def edit() -> None:
        await other.update_job(job_id, args={"a": 2})

    after_look_up(client, edit)
    with pytest.raises(JobChangedError, match="changed while it was being rescheduled"):
        await client.reschedule(job_id, time.time() + at if at else 0)
    info = await client.job(job_id)
    assert info is not None and (info.status, info.args) == (status, {"a": 2})
    assert await client.reschedule(job_id, time.time() + at if at else 0)  # looked at again
    await assert_invariants(redis, namespace)


async def test_a_cancelled_job_moved_and_cancelled_again_after_the_look_up_is_not_moved(
    redis: Redis, namespace: str, client: Client, enqueuer: Enqueuer
) -> None:
    """The look-up saw it cancelled once (its record at attempt 1); another call moved it and
    it was cancelled again (renumbered: its record at attempt 2) before this call's move."""
    job = await enqueuer.enqueue("x", {"a": 1}, delay=60)
    assert job is not None
    assert await client.cancel(job.id) == "cancelled"
    other = Client(redis, namespace=namespace)

    async def again() -> None:
        assert await other.reschedule(job.id, time.time() + 60)
        assert await other.cancel(job.id) == "cancelled"

    after_look_up(client, again)
    with pytest.raises(JobChangedError):
        await client.reschedule(job.id, 0)
    info = await client.job(job.id)
    assert info is not None and info.status == "cancelled"
    await assert_invariants(redis, namespace)
