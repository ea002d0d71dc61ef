"""The admin scripts' answers read and not written (cancel, request_cancel, update_job, move,
destroy, replace_envelope) on a master demoted by a failover: each answered from the old data
(the job finished, cancelled, unknown, not running; a re-send's answer kept by its first call),
where the new master may hold the job waiting or running (an ack, a cancel, a move or an edit
not replicated; a job enqueued since): a cancel reported done that was not, a dead job's retry
reported made. Such an answer now writes nothing first, which a replica refuses
(tests/support/demoted.py); on a master it is the same, with nothing written."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import ReadOnlyError

from errands import Client, Enqueuer
from errands.errors import JobNotFoundError
from errands.periodic.store import ScheduleStore
from errands.store.keys import Keys
from errands.store.scripts import Scripts
from tests.support.demoted import Call, check, dirty
from tests.support.infra.nodes import free_port, own_node
from tests.support.resend import snapshot

FAR = 10**13  # a due time (ms) far ahead


@pytest.fixture
async def master(tmp_path: Path) -> AsyncIterator[Redis]:
    """A master of its own (nothing else writes to it), which the test demotes."""
    async with own_node(tmp_path, "demoted") as client:
        yield client


async def test_a_cancel_that_finds_the_job_ended_or_unknown(master: Redis, namespace: str) -> None:
    keys = Keys(namespace)
    s = Scripts(master, keys)
    await master.set(keys.done("f1"), b"17")  # ack.lua's compact record
    await master.set(keys.done("f2"), b'{"id":"f2","status":"finished","result":1}')
    record = b'{"id":"c1","status":"cancelled","job":{},"finished":1,"call":"t1"}'
    await master.set(keys.done("c1"), record)  # (its envelope trimmed since)

    def cancel(id: str, call: str = "t9") -> Call:
        return lambda: s.cancel(id, "work", 1, 60_000, call)

    await check(master, namespace, [
        (cancel("f1"), "finished"),
        (cancel("f2"), "finished"),
        (cancel("c1", "t1"), "cancelled"),  # a re-send
        (cancel("c1"), "already"),
        (cancel("u1"), "unknown"),
    ])  # fmt: skip


async def test_a_cancel_request_that_finds_no_attempt(master: Redis, namespace: str) -> None:
    s = Scripts(master, Keys(namespace))
    await check(master, namespace, [
        (lambda: s.request_cancel("j1", "cancel"), False),
        (lambda: s.request_cancel("j1", "destroy"), False),
    ])  # fmt: skip


async def test_an_edit_resent_or_of_a_job_that_moved(master: Redis, namespace: str) -> None:
    keys = Keys(namespace)
    s = Scripts(master, keys)
    job = await Enqueuer(master, namespace=namespace).enqueue("work", {"a": 1})
    assert job is not None
    old = await master.hget(keys.jobs, job.id)
    assert old is not None
    queue = keys.queue("work")

    def edit(source: str, read: bytes, new: bytes) -> Call:  # (its record holds the new one)
        record = b'{"job":"' + new + b'"}'
        return lambda: s.update_job(job.id, "work", source, read, new, None, 1, record, 5)

    assert await edit(queue, old, b"new")() == 1
    await check(master, namespace, [
        (edit(queue, old, b"new"), True),  # a re-send
        (edit(queue, old, b"newer"), False),  # the envelope read changed since
        (edit(keys.dead, b"new", b"newer"), False),  # not in that set
    ])  # fmt: skip


async def test_a_move_or_destroy_resent(master: Redis, namespace: str) -> None:
    keys = Keys(namespace)
    s = Scripts(master, keys)
    enqueuer = Enqueuer(master, namespace=namespace)
    moved, destroyed = await enqueuer.enqueue("work", delay=3600), await enqueuer.enqueue("work")
    assert moved is not None and destroyed is not None
    scheduled = keys.scheduled("work")

    def move(id: str, call: str) -> Call:
        return lambda: s.move(id, "work", scheduled, "queue", call=call)

    def destroy(call: str) -> Call:
        return lambda: s.destroy(destroyed.id, "work", 2, 0, call)

    assert await move(moved.id, "m1")() is True
    assert await move("nobody", "m2")() is False
    assert await destroy("d1")() == "destroyed"
    await check(master, namespace, [
        (move(moved.id, "m1"), True),  # re-sends: answered from the reply key
        (move("nobody", "m2"), False),
        (destroy("d1"), "destroyed"),
    ])  # fmt: skip


async def test_an_args_replacement_that_finds_the_job_changed(
    master: Redis, namespace: str
) -> None:
    s = Scripts(master, Keys(namespace))
    assert await s.enqueue_unique("work", "u1", b"e1", 0, 0, "d1", FAR, 1) == (True, "u1", False)
    await check(master, namespace, [
        (lambda: s.replace_envelope("d2", "u1", b"e1", b"e2"), False),  # digest not its
        (lambda: s.replace_envelope("d1", "u1", b"other", b"e2"), False),  # envelope changed
    ])  # fmt: skip


async def test_a_clients_cancel_of_a_finished_job(master: Redis, namespace: str) -> None:
    """Client.cancel answered "finished" from its own read of the result record (a demoted
    master's, as it was), without calling cancel.lua: the script decides now."""
    keys = Keys(namespace)
    record = b'{"j":{"n":"work","a":{},"t":1},"r":1,"b":1,"e":2,"a":1}'  # (ack.lua's)
    await master.set(keys.done("f1"), record)
    client = Client(master, namespace=namespace)
    await check(master, namespace, [(lambda: client.cancel("f1"), "finished")])


async def test_the_client_finds_no_job_only_where_it_may_write(
    master: Redis, namespace: str
) -> None:
    """Client.cancel, update_job, reschedule (JobNotFoundError), destroy and retry_dead_job
    (False) answer "no such job" (or "not dead") from a read of the job: on a demoted master a
    job enqueued on the new master since is not there, and a cancel would be reported
    impossible while the job runs. Such an answer writes nothing first
    (Client._confirm_absent), which a replica refuses."""
    client = Client(master, namespace=namespace)
    queued = await Enqueuer(master, namespace=namespace).enqueue("work")
    assert queued is not None
    calls: list[Call] = [
        lambda: client.cancel("new"),
        lambda: client.update_job("new", priority=1),
        lambda: client.reschedule("new", 0.0),
    ]
    falses: list[Call] = [
        lambda: client.destroy("new"),
        lambda: client.retry_dead_job("new"),
        lambda: client.retry_dead_job(queued.id),  # (not dead here; the new master's may be)
    ]
    before, writes = await snapshot(master, namespace), await dirty(master)
    for call in calls:
        with pytest.raises(JobNotFoundError):
            await call()
    for call in falses:
        assert await call() is False
    assert await snapshot(master, namespace) == before
    assert await dirty(master) == writes
    await master.replicaof("127.0.0.1", str(free_port()))  # (nobody there: the data stays)
    for call in [*calls, *falses]:
        with pytest.raises(ReadOnlyError):
            await call()


async def test_a_quiet_request_or_schedule_switch_with_nothing_to_write(
    master: Redis, namespace: str
) -> None:
    """quiet_request's -1 (no such pool) and 0 (quiet already, or nothing to resume) and
    schedule_enable's 0 (no such schedule) wrote nothing: on a demoted master, quiet_pool of a
    pool the new master holds registered and not quiet returned False or raised
    PoolNotFoundError (no request recorded: the pool kept taking jobs), and enable_schedule of
    a schedule the new master defines raised ScheduleNotFoundError."""
    keys = Keys(namespace)
    s = Scripts(master, keys)
    store = ScheduleStore(master, keys)
    await master.zadd(keys.pools, {"p1": FAR, "p2": FAR})
    await master.set(keys.pool_info("p1"), b'{"quiet_since":1}')
    await master.set(keys.pool_info("p2"), b"{}")
    await check(master, namespace, [
        (lambda: s.quiet_request("p9", "quiet"), -1),
        (lambda: s.quiet_request("p1", "quiet"), 0),  # quiet already
        (lambda: s.quiet_request("p2", "resume"), 0),  # nothing to resume
        (lambda: store.set_enabled("nightly", True), False),
        (lambda: store.set_enabled("nightly", False), False),
    ])  # fmt: skip
