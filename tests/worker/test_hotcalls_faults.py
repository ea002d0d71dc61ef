"""The held fetch connection (store/hotcalls.py) when it fails: a fetch whose reply was lost
has its jobs looked for at once, a connection to a master demoted to a replica (READONLY,
a Sentinel failover) is given up instead of refusing every fetch, and one that times out takes
the held ack connection with it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

from errands import Enqueuer, Job, WorkerPool
from errands.store.connection import connect
from errands.store.hotcalls import WorkerScripts
from errands.store.keys import Keys
from errands.store.pinned import PinnedScript
from errands.store.scripts import Acked
from errands.worker.mailbox import Mailbox
from errands.worker.notifier import Notifier
from tests.faults.proxy import FaultProxy
from tests.support.procs import eventually

Pack = Callable[[bytes, bytes], bytes]  # (PinnedScript.call_packed's)


def now(check: Callable[[], Any]) -> Callable[[], Awaitable[Any]]:
    async def probe() -> Any:
        return check()

    return probe


async def started_pool(redis: Redis, namespace: str, ran: asyncio.Event) -> WorkerPool:
    pool = WorkerPool(redis, namespace=namespace, concurrency=2, poll_interval=30.0)

    @pool.job("a")
    async def a(job: Job) -> None:
        ran.set()

    await pool.start()
    assert pool.worker is not None and isinstance(pool.worker.scripts, WorkerScripts)
    return pool


async def test_the_jobs_of_a_fetch_whose_reply_was_lost_run_soon(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reply of a fetch that took the job is lost on the held connection: the job sits in
    the pool's in-progress set; the pool looks for such jobs at once, not at its next periodic
    look (an hour away here), and runs it."""
    monkeypatch.setattr(Mailbox, "enabled", False)  # the job comes by a fetch, not handed off
    ran = asyncio.Event()
    pool = await started_pool(redis, namespace, ran)
    try:
        worker = pool.worker
        assert worker is not None and isinstance(worker.scripts, WorkerScripts)
        worker.reclaim_interval = 3600.0
        held, lose = worker.scripts.pinned["fetch"], [True]
        # the pool's first fetch done (it found nothing): none is in flight, unpatched
        await eventually(now(lambda: worker._marked_idle), 10, "the first fetch")
        call = PinnedScript.call_packed

        async def lossy(self: PinnedScript, pack: Pack) -> Any:
            reply = await call(self, pack)
            if self is held and lose and len(reply) > 4:  # (a job taken: 4 + 5 per job)
                lose.clear()
                raise RedisConnectionError("the reply was lost")
            return reply

        monkeypatch.setattr(PinnedScript, "call_packed", lossy)
        await Enqueuer(redis, namespace=namespace).enqueue("a", {}, job_id="orphan")
        await asyncio.wait_for(ran.wait(), 10)
        assert not lose and worker.reclaimed == 1
    finally:
        await pool.stop()


async def test_a_held_connection_to_a_demoted_master_is_given_up(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every call on the old connection answers READONLY (as a master turned replica does):
    the fetch goes the general way and the next one takes a new connection."""
    monkeypatch.setattr(Mailbox, "enabled", False)  # the job comes by a fetch, not handed off
    ran = asyncio.Event()
    pool = await started_pool(redis, namespace, ran)
    try:
        assert pool.worker is not None and isinstance(pool.worker.scripts, WorkerScripts)
        held = pool.worker.scripts.pinned["fetch"]
        async with asyncio.timeout(10):
            while held._conn is None:  # (the pool's first fetch connects it)
                await asyncio.sleep(0.005)
        old = held._conn
        call = PinnedScript.call_packed

        async def demoted(self: PinnedScript, pack: Pack) -> Any:
            if self is held and self._conn is old:
                raise ReadOnlyError("You can't write against a read only replica.")
            return await call(self, pack)

        monkeypatch.setattr(PinnedScript, "call_packed", demoted)
        await Enqueuer(redis, namespace=namespace).enqueue("a", {})
        await asyncio.wait_for(ran.wait(), 10)
        assert held._conn is not old
    finally:
        await pool.stop()


async def test_a_held_connection_that_times_out_takes_the_other_with_it(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The held fetch connection times out (a black-holed path): the held ack connection,
    which went the same way, is given up with it, so the next ack connects anew instead of
    waiting a second socket timeout. (In CI the jobs a black hole held up ended after their
    own calls' timeout, and their ack was the first call on the held ack connection since the
    fault: acknowledged after 30 s, two timeouts, not 15 s.)"""
    ran = asyncio.Event()
    pool = await started_pool(redis, namespace, ran)
    try:
        worker = pool.worker
        assert worker is not None and isinstance(worker.scripts, WorkerScripts)
        scripts = worker.scripts
        held_fetch, held_ack = scripts.pinned["fetch"], scripts.pinned["ack"]
        enqueuer = Enqueuer(redis, namespace=namespace)
        await enqueuer.enqueue("a", {}, job_id="before")

        async def acked(n: int) -> bool:
            return worker.processed == n and worker.acker.idle and held_ack._link is not None

        await eventually(lambda: acked(1), 10, "the first job acked on the held connection")
        old = held_ack._link
        assert old is not None and old.broken is None
        call = PinnedScript.call_packed
        timed_out: list[bool] = []

        async def black_holed(self: PinnedScript, pack: Pack) -> Any:
            if self is held_fetch and not timed_out:
                timed_out.append(True)
                raise RedisTimeoutError("Timeout reading from the pinned connection")
            return await call(self, pack)

        monkeypatch.setattr(PinnedScript, "call_packed", black_holed)
        ran.clear()
        await enqueuer.enqueue("a", {}, job_id="after")
        await asyncio.wait_for(ran.wait(), 10)  # fetched the general way
        await eventually(lambda: acked(2), 10, "the second job acked")
        assert timed_out and scripts.fallbacks == 1  # the ack did not fall back: not sent
        assert old.broken is not None  # on the old connection, given up with the fetch's
        assert held_ack._link is not old
        await enqueuer.aclose()
    finally:
        await pool.stop()


async def test_a_silent_wake_up_subscription_gives_up_the_held_connections(
    redis: Redis, redis_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pool's connections are black-holed while its held connections are idle (a full
    pool: its jobs wait on calls of their own): the wake-up subscription's PING finds the path
    dead first, and the held connections are given up then, not at the first call on each
    after the jobs' calls time out (one socket timeout later: jobs acknowledged after two)."""
    monkeypatch.setattr(Notifier, "ping_interval", 0.1)
    port = int(redis_url.rpartition(":")[2].partition("/")[0])
    with FaultProxy(port) as proxy:
        client = connect(proxy.url, socket_timeout=60.0)  # (no call times out meanwhile)
        ran = asyncio.Event()
        pool = await started_pool(client, namespace, ran)
        try:
            worker = pool.worker
            assert worker is not None and isinstance(worker.scripts, WorkerScripts)
            held = worker.scripts.pinned
            await Enqueuer(redis, namespace=namespace).enqueue("a", {})

            async def acked() -> bool:
                return worker.processed == 1 and worker.acker.idle

            await eventually(acked, 10, "the job acked on the held connection")
            links = [held["fetch"]._link, held["ack"]._link]
            assert all(link is not None and link.broken is None for link in links)
            assert proxy.blackhole() > 0

            async def given_up() -> bool:
                return all(link is not None and link.broken is not None for link in links)

            await eventually(given_up, 10, "the held connections given up")
        finally:
            await pool.stop()
            await client.aclose()


async def test_a_silent_subscription_keeps_a_held_connection_with_a_call_in_flight(
    redis: Redis, redis_url: str, namespace: str
) -> None:
    """The held connections given up when the wake-up subscription goes silent (drop_held) are
    those no call is in flight on: the held fetch connection, its call's reply on its way (held
    back 1 s here), keeps it and answers; the idle ack connection is given up. (Both were: the
    fetch went the general way, sent again.)"""
    port = int(redis_url.rpartition(":")[2].partition("/")[0])
    with FaultProxy(port) as proxy:
        client = connect(proxy.url, socket_timeout=60.0)
        try:
            scripts = WorkerScripts(client, Keys(namespace))
            now_ms = await scripts.heartbeat("p1", b"{}", 60_000, "register")
            await scripts.fetch("p1", now_ms, 1, [("a", 0)])  # (each held connection made)
            nobody = Acked("none", "a", b"1", now_ms, 0, 1, "1")  # (refused by the fence)
            await scripts.ack_report("p1", [nobody], False, now_ms, False)
            fetch_link, ack_link = scripts.pinned["fetch"]._link, scripts.pinned["ack"]._link
            assert fetch_link is not None and ack_link is not None
            proxy.hold_replies(1.0)
            call = asyncio.ensure_future(scripts.fetch("p1", now_ms, 1, [("a", 0)]))
            await eventually(now(lambda: fetch_link._waiting), 5, "the fetch in flight")
            await scripts.drop_held()
            assert fetch_link.broken is None and ack_link.broken is not None
            assert await asyncio.wait_for(call, 10) is not None
            assert scripts.fallbacks == 0 and scripts.pinned["fetch"]._link is fetch_link
        finally:
            await client.aclose()


async def test_a_subscription_lost_to_no_fault_of_its_connection_gives_nothing_up(
    own_redis: Redis, namespace: str
) -> None:
    """on_lost (the worker gives up its held connections) is called for a subscription lost
    with its connection (killed here), not for another error (here the control handler
    raising): the path to the server is not suspect then."""
    lost: list[bool] = []
    keys = Keys(namespace)

    def on_control(message: str) -> None:
        raise RuntimeError(f"a bad control message: {message}")

    async def on_lost() -> None:
        lost.append(True)

    notifier = Notifier(
        own_redis, [keys.wake_channel], asyncio.Event(), keys.control_channel, on_control
    )
    notifier.on_lost = on_lost
    task = asyncio.ensure_future(notifier.run())
    try:
        await asyncio.wait_for(notifier.subscribed.wait(), 5)
        await own_redis.publish(keys.control_channel, "cancel:x")
        await eventually(now(lambda: notifier.reconnects == 1), 5, "the subscription lost")
        await asyncio.wait_for(notifier.subscribed.wait(), 5)
        assert lost == []
        await own_redis.client_kill_filter(_type="pubsub")
        await eventually(now(lambda: lost == [True]), 5, "on_lost called")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_dead_path_at_a_library_load_costs_one_timeout(
    own_redis: Redis, own_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fetch's library gone ("Function not found": loaded again before the next call) and
    then the path black-holed: that next call's load is sent on the held connection, under the
    hot call's own timeout, and its timeout sends the call the general way at once. (The load
    went on the general client: its socket timeout, with redis-py's retries on reconnects, and
    then the held call's timeout: the general path reached after 5.7 s here, not 1.)"""
    port = int(own_url.rpartition(":")[2].partition("/")[0])
    timeout = 1.0
    with FaultProxy(port) as proxy:
        client = connect(proxy.url, socket_timeout=timeout, socket_connect_timeout=timeout)
        try:
            scripts = WorkerScripts(client, Keys(namespace))
            now_ms = await scripts.heartbeat("p1", b"{}", 60_000, "register")
            await scripts.fetch("p1", now_ms, 1, [("a", 0)])  # (its library loaded)
            assert scripts.loads == 1
            await own_redis.function_flush()
            await scripts.fetch("p1", now_ms, 1, [("a", 0)])  # (not found: EVALSHA)
            assert "fetch" in scripts.to_load and scripts.fallbacks == 1
            loop = asyncio.get_running_loop()
            began, reached = loop.time(), []

            async def general(*args: Any) -> Any:
                reached.append(loop.time() - began)
                raise RedisConnectionError("(the general path: the test ends here)")

            monkeypatch.setattr("errands.store.scripts.Scripts._call", general)
            assert proxy.blackhole(new_connections=True) > 0
            with pytest.raises(RedisConnectionError, match="the test ends here"):
                await scripts.fetch("p1", now_ms, 1, [("a", 0)])
            assert reached and reached[0] < 2 * timeout, reached  # (one timeout and slack)
            assert scripts.fallbacks == 2 and not scripts.lost_reply  # (the fetch not sent)
            assert "fetch" in scripts.to_load  # (tried again LOAD_RETRY_S later)
        finally:
            await client.aclose()
