"""A waiting job edited, then given a later enqueue's envelope by a debounced enqueue of its key
(lib/dedup.lua dedup_replace), keeps its count of edits ("e"): update_job.lua names an edit's
history record "<id>:e<n>" with n = that count + 1, destroy.lua erases the edits it counts, and
update_job.lua's re-send check ("a re-send after the job ran on: this edit's record") trusts that
member to be this call's. With the count reset to none (the request's envelope stored as sent),
the next edit reused "<id>:e1" (the first edit's record overwritten), destroy() left "<id>:e1"
behind, a re-send of the first edit took another admin's record for a different one and edited
again, and a different edit with the same record was answered 1 while nothing was applied.
The rerun_latest paths and the envelope's bytes: tests/dedup/test_replace_edits.py."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from errands import Client, Dedup, Enqueuer
from errands.clock import FakeClock
from tests.admin.test_resend import resent
from tests.support.client_env import traces


def debounce() -> Dedup:
    return Dedup("k", debounce=True)


async def edited_then_replaced(client: Client, enqueuer: Enqueuer) -> str:
    """A waiting debounced job, edited once, then replaced by a second enqueue of its key."""
    job = await enqueuer.enqueue("work", {"n": 1}, dedup=debounce(), delay=60)
    assert job is not None
    await client.update_job(job.id, args={"n": 2})
    again = await enqueuer.enqueue("work", {"n": 3}, dedup=debounce(), delay=60)
    assert again is not None and again.dedup is not None
    assert again.dedup.status == "replaced"
    return job.id


async def test_destroy_after_a_dedup_replace_erases_the_edit_record(
    redis: Redis, namespace: str, client: Client, enqueuer: Enqueuer
) -> None:
    """Client.destroy counts the edits of JobInfo.edits, destroy.lua those of the envelope
    (lib/edits.lua edits_of): with the count lost, "<id>:e1" was left in history_data and the
    name's history, although destroy removes every trace."""
    job_id = await edited_then_replaced(client, enqueuer)
    assert await client.destroy(job_id) is True
    assert not await redis.hexists(client.keys.history_data, f"{job_id}:e1")
    # (enqueue_dedup's reply key, "replaced <id> <id>", kept 2 minutes, is no trace of the job's)
    left = [k for k in await traces(redis, namespace, job_id) if ":reply:" not in k]
    assert left == []


async def test_a_second_edit_after_a_dedup_replace_keeps_the_first_record(
    redis: Redis, namespace: str, client: Client, enqueuer: Enqueuer
) -> None:
    """With the count lost, the second edit was numbered e1 again and overwrote the first
    edit's history record (HSET history_data): the job's history showed one edit of two."""
    job_id = await edited_then_replaced(client, enqueuer)
    await client.update_job(job_id, args={"n": 4})
    edits = [h for h in await client.history_job(job_id) if h.status == "edited"]
    assert len(edits) == 2


async def test_a_resent_edit_does_not_undo_a_later_edit(
    redis: Redis, namespace: str, client: Client, enqueuer: Enqueuer
) -> None:
    """Edit A is applied; before its re-send arrives the job's key is re-enqueued (debounce:
    envelope replaced, its count kept) and another admin edits it (B, recorded as "<id>:e2").
    The re-send finds its own record "<id>:e1" and answers 1. With the count lost, B was
    recorded under "<id>:e1" too, overwriting A's record: the re-send answered 0, and
    Client.update_job looked again and applied A a second time, over B (the same call sent
    twice left another final state than sent once)."""
    job = await enqueuer.enqueue("work", {"n": 1}, dedup=debounce(), delay=60)
    assert job is not None

    done: list[bool] = []

    async def replace_then_other_admin_edits() -> None:  # (once: before the first re-send)
        if done:
            return
        done.append(True)
        again = await enqueuer.enqueue("work", {"n": 3}, dedup=debounce(), delay=60)
        assert again is not None
        async with Client(redis, namespace=namespace) as other:
            await other.update_job(job.id, args={"n": 5})

    with resent(client.scripts, "update_job", between=replace_then_other_admin_edits) as firsts:
        await client.update_job(job.id, args={"n": 2})
    info = await client.job(job.id)
    assert info is not None
    assert info.args == {"n": 5}  # B, the later edit, stands (as with no re-send)
    assert firsts == [1]  # (count lost: [1, 1], the re-send answered 0, the Client edited again)


@pytest.fixture
async def frozen() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def frozen_enqueuer(
    redis: Redis, namespace: str, frozen: FakeClock
) -> AsyncIterator[Enqueuer]:
    async with Enqueuer(redis, namespace=namespace, strict=None, clock=frozen) as e:
        yield e


async def test_a_different_edit_is_not_taken_for_a_resend(
    redis: Redis, namespace: str, frozen: FakeClock, frozen_enqueuer: Enqueuer
) -> None:
    """Admin A edits the job to n=2; the key is re-enqueued with the job's first args (its
    envelope back to the original but for its count of edits); admin B edits it to n=2, as
    "<id>:e2". With the count lost (needs the same ms for both edits and both enqueues: a
    frozen clock, as errands' own FakeClock gives a user's tests), B's member and record were
    byte for byte A's, so update_job.lua's re-send check answered B 1 ("a re-send after the
    job ran on") and wrote nothing: B was told its edit was made, the job kept n=1."""
    enqueuer = frozen_enqueuer
    job = await enqueuer.enqueue("work", {"n": 1}, dedup=debounce(), delay=60)
    assert job is not None
    async with Client(redis, namespace=namespace, clock=frozen) as a:
        await a.update_job(job.id, args={"n": 2})
    again = await enqueuer.enqueue("work", {"n": 1}, dedup=debounce(), delay=60)
    assert again is not None and again.dedup is not None
    assert again.dedup.status == "replaced"
    async with Client(redis, namespace=namespace, clock=frozen) as b:
        info = await b.update_job(job.id, args={"n": 2})
    assert info.args == {"n": 2}
