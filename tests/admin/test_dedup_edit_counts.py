"""REVIEW (rev-admin) -- tests for the mender, FAILING on main at 4a51a51.

update_job.lua names an edit's history record "<id>:e<n>" with n = the envelope's edit count
("e") + 1, destroy.lua erases the edits "its envelope counts", and update_job.lua's re-send
check ("a re-send after the job ran on: this edit's record") trusts that member to be this
call's. All three assume the envelope's "e" counts every edit of the job's life. It does not:
a debounced (or rerun_latest) enqueue_dedup gives the waiting holder the request's envelope
(lib/dedup.lua dedup_replace: ``HSET jobs id a.env``), which counts no edit. The next edit then
reuses "<id>:e1" (the first edit's record overwritten), destroy() leaves "<id>:e1" behind, a
re-send of the first edit takes another admin's record for a different one and edits again, and
a different edit with the same record is answered 1 while nothing was applied."""

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


async def test_review_destroy_after_a_dedup_replace_erases_the_edit_record(
    redis: Redis, namespace: str, client: Client, enqueuer: Enqueuer
) -> None:
    """FAILS on main: the replace reset the envelope's "e" to none; Client.destroy counts 0
    edits (JobInfo.edits) and so does destroy.lua (edits_of(env)): "<id>:e1" is left in
    history_data and the name's history, although destroy removes every trace."""
    job_id = await edited_then_replaced(client, enqueuer)
    assert await client.destroy(job_id) is True
    assert not await redis.hexists(client.keys.history_data, f"{job_id}:e1")
    # (enqueue_dedup's reply key, "replaced <id> <id>", kept 2 minutes, is no trace of the job's)
    left = [k for k in await traces(redis, namespace, job_id) if ":reply:" not in k]
    assert left == []


async def test_review_a_second_edit_after_a_dedup_replace_keeps_the_first_record(
    redis: Redis, namespace: str, client: Client, enqueuer: Enqueuer
) -> None:
    """FAILS on main: the second edit is numbered e1 again and overwrites the first edit's
    history record (HSET history_data), so the job's history shows one edit of two."""
    job_id = await edited_then_replaced(client, enqueuer)
    await client.update_job(job_id, args={"n": 4})
    edits = [h for h in await client.history_job(job_id) if h.status == "edited"]
    assert len(edits) == 2


async def test_review_a_resent_edit_does_not_undo_a_later_edit(
    redis: Redis, namespace: str, client: Client, enqueuer: Enqueuer
) -> None:
    """FAILS on main: edit A is applied; before its re-send arrives the job's key is
    re-enqueued (debounce: envelope replaced, "e" gone) and another admin edits it (B, recorded
    under the same member "<id>:e1", overwriting A's record). The re-send no longer finds A's
    record, answers 0, and Client.update_job looks again and applies A a second time, over B:
    the same call sent twice leaves another final state than sent once (B's args)."""
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
    assert firsts == [1]  # (on main [1, 1]: the re-send answered 0, the Client edited again)


@pytest.fixture
async def frozen() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def frozen_enqueuer(
    redis: Redis, namespace: str, frozen: FakeClock
) -> AsyncIterator[Enqueuer]:
    async with Enqueuer(redis, namespace=namespace, strict=None, clock=frozen) as e:
        yield e


async def test_review_a_different_edit_is_not_taken_for_a_resend(
    redis: Redis, namespace: str, frozen: FakeClock, frozen_enqueuer: Enqueuer
) -> None:
    """FAILS on main (needs the same ms for both edits and both enqueues: a frozen clock, as
    errands' own FakeClock gives a user's tests): admin A edits the job to n=2; the key is
    re-enqueued with the job's first args (envelope back to the original, "e" gone); admin B
    edits it to n=2. B's member and record are byte for byte A's, so update_job.lua's new
    check answers B 1 ("a re-send after the job ran on") and writes nothing: B is told its
    edit was made, the job keeps n=1 and runs with it."""
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
