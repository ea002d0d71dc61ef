"""The answers read and not written of checkin, checkpoint, schedule_fire, wf_cancel, heartbeat
and fetch on a master demoted by a failover: each answered from the old data, where the new
master may hold otherwise. A check-in or checkpoint told "not this attempt's job" (the
attempt's start not replicated yet, or the end the old data shows lost) stops its handler,
whose ack then ends the job on the new master with its work undone; a fire told "stale" or
given a re-send's answer ("fired", the first send's writes not replicated) skips the slot; a
run's cancel told "done" or "not running" leaves it running; a pool whose heartbeat or fetch is
told its lease lost abandons its jobs (one whose fetch is told it expired stops fetching). Such
an answer now writes nothing first, which a replica refuses (tests/support/demoted.py); on a
master it is the same, with nothing written."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import ReadOnlyError

from errands import Client, Enqueuer, FakeClock
from errands.longwork.store import longwork_scripts
from errands.periodic.store import ScheduleStore, make_periodic
from errands.store.keys import Keys
from errands.store.scripts import LeaseLost, Scripts
from errands.workflows.store import Member, WorkflowScripts
from tests.support.demoted import Call, check
from tests.support.fetched import POOL, running_job
from tests.support.infra.nodes import free_port, own_node
from tests.support.resend import Recorder

START = 1_767_225_600.0  # 2026-01-01T00:00:00Z


@pytest.fixture
async def master(tmp_path: Path) -> AsyncIterator[Redis]:
    """A master of its own (nothing else writes to it), which the test demotes."""
    async with own_node(tmp_path, "demoted") as client:
        yield client


async def test_a_checkin_or_checkpoint_of_an_attempt_that_lost_its_job(
    master: Redis, namespace: str
) -> None:
    keys, job_id = await running_job(master, namespace, token="1")
    scripts = Scripts(master, keys)
    longwork = longwork_scripts(scripts)

    def checkin(id: str, attempt: str) -> Call:
        return lambda: scripts.checkin(id, "work", b"{}", attempt)

    def checkpoint(id: str, attempt: str) -> Call:
        return lambda: longwork.checkpoint(id, "work", attempt, b"{}")

    await check(master, namespace, [
        (checkin(job_id, f"{POOL}:2"), False),  # another attempt's
        (checkin("nobody", f"{POOL}:1"), False),
        (checkpoint(job_id, f"{POOL}:2"), None),
        (checkpoint("nobody", f"{POOL}:1"), None),
    ])  # fmt: skip


async def test_a_fire_answered_from_the_schedule_state(master: Redis, namespace: str) -> None:
    client = Client(master, namespace=namespace, clock=FakeClock(START))
    await client.add_schedule("nightly", "tick", "0 3 * * *")
    store = client._schedule_store
    fire = Recorder(store._fire)
    store._fire = fire  # type: ignore[assignment]
    job_id = await client.run_schedule_now("nightly")
    keys, args = fire.calls[-1][:2]

    def send(**changed: str | int) -> Call:  # the manual run's call, some ARGV changed
        argv = list(args)
        at = {"mode": 0, "slot": 1, "next": 2, "id": 6, "schedule": 12, "definition": 16}
        for what, value in changed.items():
            argv[at[what]] = value
        # (another call's reply key: a manual run's is that of its job id)
        keyv = [*keys[:17], Keys(namespace).reply(str(argv[6]))]
        return lambda: fire.script(keys=keyv, args=argv)

    assert await send(mode="init", slot=1000, next=2000, id="i1")() == [b"initialized", b""]
    await check(master, namespace, [
        (send(), [b"fired", job_id.encode()]),  # a re-send
        (send(mode="fire", slot=500, next=2000, id="f1"), [b"stale", b""]),
        (send(id="f2", schedule="nobody"), [b"gone", b""]),
        (send(id="f3", definition="another"), [b"conflict", b""]),
    ])  # fmt: skip


async def test_a_run_cancel_resent_or_of_a_run_not_running(master: Redis, namespace: str) -> None:
    wf = WorkflowScripts(master, Keys(namespace))
    member = Member("a", "work", True, 0, b"ea", b'{"n":"work","f":"fail","p":0,"d":[]}')
    assert await wf.enqueue("w1", "flow", 60_000, [member], [], []) is True
    assert await wf.cancel("w1", [], "c1") is True
    await check(master, namespace, [
        (lambda: wf.cancel("w1", [], "c1"), True),  # a re-send
        (lambda: wf.cancel("w9", [], "c2"), False),  # unknown
    ])  # fmt: skip


async def test_a_heartbeat_told_its_lease_lost(master: Redis, namespace: str) -> None:
    """A pool told its lease is lost drops the acks it has not written and cancels its jobs
    (worker/stopping.py abandon): where the new master still holds its lease (it registered
    there since; its reaping was not replicated), those jobs ran again once its beats stopped."""
    keys = Keys(namespace)
    scripts = Scripts(master, keys)
    await master.zadd(keys.retired, {"p2": 1})
    await check(master, namespace, [
        (lambda: scripts.heartbeat("p1", b"{}", 60_000, "renew"), -1),  # not registered
        (lambda: scripts.heartbeat("p2", b"{}", 60_000, "register"), -1),  # retired
    ])  # fmt: skip


async def test_a_fetch_told_its_lease_lost_or_expired(master: Redis, namespace: str) -> None:
    """fetch.lua's -1 (the pool not registered: the pool abandons its jobs, as a heartbeat's
    -1) and -2 (its last beat older than the dead timeout: it stops fetching), read from the
    pools set, on the fetch loop's call (with its hand-off arming key) and a batch fetch's;
    jobs wait in the queue, which such an answer leaves there."""
    keys = Keys(namespace)
    scripts = Scripts(master, keys)
    async with Enqueuer(master, namespace=namespace) as enqueuer:
        await enqueuer.enqueue_many([("work", {"i": i}) for i in range(3)])
    await master.zadd(keys.pools, {"p2": 1})  # (its beat: 1 ms after the epoch)
    raw = Recorder(scripts._s["fetch"])
    scripts._s["fetch"] = raw  # type: ignore[assignment]

    def fetch(pool: str, handoffs: bool | None) -> Call:
        async def call() -> str | None:
            try:
                got = await scripts.fetch(pool, 0, 8, [("work", 0)], handoffs=handoffs)
            except LeaseLost:
                return "lost"
            return "expired" if got is None else "fetched"

        return call

    def resend(index: int) -> Call:  # the raw reply of call `index` (KEYS and ARGV recorded)
        return lambda: raw.script(keys=raw.calls[index][0], args=raw.calls[index][1])

    await check(master, namespace, [
        (fetch("p1", False), "lost"),
        (fetch("p1", None), "lost"),
        (fetch("p2", False), "expired"),
        (fetch("p2", None), "expired"),
        (resend(0), [-1, b"", -1]),  # the replies as before: the status, no token, no wait
        (resend(2), [-2, b"", -1]),
    ])  # fmt: skip
    assert await master.zcard(keys.queue("work")) == 3


async def test_a_fetch_of_a_live_pool_writes_whatever_it_answers(
    master: Redis, namespace: str
) -> None:
    """Every other fetch.lua answer of a registered pool within its lease follows a write (a job
    taken, its idle marks set or taken away), which a demoted master refuses: an empty queue,
    a paused name, one at its max_concurrency, a fetch of no jobs (the pool full)."""
    keys = Keys(namespace)
    scripts = Scripts(master, keys)
    async with Enqueuer(master, namespace=namespace) as enqueuer:
        await enqueuer.enqueue_many([("held", {}), ("capped", {}), ("work", {})])
    await master.sadd(keys.paused, "held")
    await master.hset(keys.running, "capped", 1)
    now = await scripts.heartbeat("p1", b"{}", 60_000, "register")
    await master.replicaof("127.0.0.1", str(free_port()))  # (nobody there: the data stays)
    for batch, queues in [
        (8, [("empty", 0)]),
        (8, [("held", 0)]),
        (8, [("capped", 1)]),
        (0, [("work", 0)]),
        (8, [("held", 0), ("capped", 1), ("work", 0)]),
    ]:
        for handoffs in (False, None):
            with pytest.raises(ReadOnlyError):
                await scripts.fetch("p1", now, batch, queues, handoffs=handoffs)


async def test_a_registration_answered_with_conflicts_only(master: Redis, namespace: str) -> None:
    """schedule_register's conflicts (another pool's code defines the name differently, still
    live) wrote nothing: on a demoted master a pool was told so from the old data, where the new
    master may hold its own definition (the other one dropped, or its own registered since), and
    kept its schedule unfired."""
    store = ScheduleStore(master, Keys(namespace))
    theirs = make_periodic("@every 1m", "tick", name="nightly")
    mine = make_periodic("@every 2m", "tick", name="nightly")
    now = int(START * 1000)
    assert (await store.refresh([theirs], now, 60_000))[0] == 1
    conflict = (0, {}, {"nightly": theirs.to_json()})
    await check(master, namespace, [(lambda: store.refresh([mine], now + 1, 60_000), conflict)])
