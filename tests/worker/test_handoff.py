"""Hand-offs (store/lua/lib/handoff.lua, worker/mailbox.py): an enqueue takes its job into an
idle pool's in-progress set and pushes it on the pool's list, only where a fetch of that pool
would have taken it at once (its queue empty, not paused, no limit); a job handed to a pool that
died comes back through the reaper and runs once; a pool stopping gives back what it holds."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial
from types import SimpleNamespace
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from errands import Client, Enqueuer, Job, WorkerPool
from errands.limits import Rate, compile_limits
from errands.store.keys import Keys
from errands.store.scripts import Scripts
from errands.worker.mailbox import POKE, POKE_TTL_MS, Mailbox, parse_handoff

from .test_wake import QUIET, all_idle, handed, make_pools, running, until


async def idle_ghost(redis: Redis, keys: Keys, limit: int = 0, **kw: Any) -> Scripts:
    """A pool "ghost" registered and marked idle for "w", taking hand-offs, that died."""
    scripts = Scripts(redis, keys)
    await scripts.heartbeat("ghost", b"{}", 60_000, "register")
    got = await scripts.fetch("ghost", 0, 4, [("w", limit)], idle_ms=600_000, handoffs=True, **kw)
    assert got == []
    return scripts


async def handed_to_ghost(redis: Redis, keys: Keys) -> list[bytes]:
    return list(await redis.lrange(keys.handoff("ghost"), 0, -1))


async def test_an_enqueue_hands_its_job_to_an_idle_pool_as_a_fetch_takes_it(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    await idle_ghost(redis, keys)
    async with Enqueuer(redis, namespace=namespace) as enq:
        job = await enq.enqueue("w", {"i": 1}, priority=3)
    [raw] = await handed_to_ghost(redis, keys)
    entry = parse_handoff(raw)
    assert entry is not None
    name, item = entry
    assert (name, item.id) == ("w", job.id)
    assert await redis.zcard(keys.queue("w")) == 0
    assert await redis.hget(keys.attempts, job.id) == f"ghost:{item.token}".encode()
    assert await redis.zscore(keys.in_progress("ghost"), f"{job.id}:w") is not None
    assert await redis.hget(keys.running, "w") == b"1"
    assert await redis.zscore(keys.idle_for("w"), "ghost") is None  # its mark taken
    # one hand-off waits at most: the next job is queued (and the pool woken)
    async with Enqueuer(redis, namespace=namespace) as enq:
        await enq.enqueue("w")
    assert len(await handed_to_ghost(redis, keys)) == 1
    assert await redis.zcard(keys.queue("w")) == 1


async def test_a_mark_allows_one_hand_off_whatever_names_the_pool_serves(
    redis: Redis, namespace: str
) -> None:
    """A pool idle for "a" and "b" that asked for one job was handed one of each: the hand-off
    took its mark of one name, and its list was empty again once it read the first job."""
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    await scripts.heartbeat("ghost", b"{}", 60_000, "register")
    names = [("a", 0), ("b", 0)]
    for _ in range(2):  # (the second while armed by the first)
        assert await scripts.fetch("ghost", 0, 1, names, idle_ms=600_000, handoffs=True) == []
    async with Enqueuer(redis, namespace=namespace) as enq:
        await enq.enqueue("a")
        assert await redis.lpop(keys.handoff("ghost"))  # read by the pool: its list empty
        job = await enq.enqueue("b")
        assert await handed_to_ghost(redis, keys) == []  # queued (and the pool woken)
        assert await redis.zscore(keys.queue("b"), job.id) is not None
        assert await redis.hget(keys.running, "b") is None
        # its next fetch counts its free slots again: marked idle, it takes a hand-off again
        got = await scripts.fetch("ghost", 0, 2, names, idle_ms=600_000, handoffs=True)
        assert [item.id for item in got or []] == [job.id]
        await enq.enqueue("a")
        assert len(await handed_to_ghost(redis, keys)) == 1


async def test_no_hand_off_where_a_fetch_would_not_take_the_job_at_once(
    own_redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    async with Enqueuer(own_redis, namespace=namespace) as enq:

        async def queued_not_handed(**kw: Any) -> None:
            await enq.enqueue("w", **kw)
            assert await handed_to_ghost(own_redis, keys) == []
            assert await own_redis.zcard(keys.queue("w")) + await own_redis.zcard(
                keys.scheduled("w")
            )
            await own_redis.flushdb()

        await idle_ghost(own_redis, keys, limit=2)  # max_concurrency: the fetch counts the room
        await queued_not_handed()
        await idle_ghost(
            own_redis, keys, specs={"w": compile_limits([Rate(5, per=1.0)])[1]}
        )  # a rate
        await queued_not_handed()
        await idle_ghost(own_redis, keys)
        await Client(own_redis, namespace=namespace).set_limits("w", [Rate(5, per=1.0)])
        await queued_not_handed()  # set at run time, before the pool knows
        await idle_ghost(own_redis, keys)
        await own_redis.sadd(keys.paused, "w")
        await queued_not_handed()
        await idle_ghost(own_redis, keys)
        await own_redis.zadd(keys.queue("w"), {"older": 1})
        await queued_not_handed()  # a job queued before it (held back, or not fetched yet)
        for kw in ({"partition": "p"}, {"delay": 60}):
            await idle_ghost(own_redis, keys)
            await queued_not_handed(**kw)
        await idle_ghost(own_redis, keys)
        await own_redis.zrem(keys.pools, "ghost")  # reaped meanwhile
        await queued_not_handed()
        scripts = Scripts(own_redis, keys)  # a pool that takes no hand-offs (an older errands)
        await scripts.heartbeat("ghost", b"{}", 60_000, "register")
        await scripts.fetch("ghost", 0, 4, [("w", 0)], idle_ms=600_000)
        await queued_not_handed()


async def test_a_job_handed_to_a_pool_that_died_runs_once_after_the_reaper(
    redis: Redis, redis_url: str, namespace: str
) -> None:
    keys = Keys(namespace)
    await idle_ghost(redis, keys)  # blocked on its list when it was killed
    async with Enqueuer(redis, namespace=namespace) as enq:
        job = await enq.enqueue("w")
    assert len(await handed_to_ghost(redis, keys)) == 1
    runs: list[str] = []
    pool = WorkerPool.from_url(
        redis_url, namespace=namespace, poll_interval=0.2, dead_timeout=1.0,
        heartbeat_interval=0.1,
    )  # fmt: skip

    @pool.job("w")
    async def w(job: Job) -> None:
        runs.append(job.id)

    async with pool:
        await until(lambda: runs == [job.id], timeout=15)  # reaped, requeued, run here
        assert await handed_to_ghost(redis, keys) == []  # the reaper deleted the list
        await pool.drain(timeout=5)
    assert runs == [job.id]


async def test_an_idle_pool_runs_a_handed_job_and_its_stop_leaves_nothing(
    redis: Redis, redis_url: str, namespace: str
) -> None:
    keys = Keys(namespace)
    pools, started = make_pools(redis_url, namespace, 1, concurrency=2, poll_interval=QUIET)
    pool = pools[0]
    async with running(pools), Enqueuer(redis, namespace=namespace) as enq:
        await all_idle(redis, keys, pools)
        await enq.enqueue("w")
        await until(lambda: len(started) == 1, timeout=5)  # not QUIET: handed to it
        assert handed(pool) == 1
        pool_id = pool.id
    left = (keys.handoff(pool_id), keys.in_progress(pool_id), keys.handoff_armed(pool_id))
    assert await redis.exists(*left) == 0
    assert await redis.zscore(keys.pools, pool_id) is None  # deregistered


async def test_a_stopping_pool_gives_back_a_job_handed_to_it(
    redis: Redis, redis_url: str, namespace: str
) -> None:
    keys = Keys(namespace)
    pools, started = make_pools(redis_url, namespace, 1, concurrency=2, poll_interval=QUIET)
    pool = pools[0]
    async with running(pools), Enqueuer(redis, namespace=namespace) as enq:
        await all_idle(redis, keys, pools)
        worker = pool.worker
        assert worker is not None
        async with worker.mailbox.quiet():  # no BLPOP in flight: the job waits in the list
            job = await enq.enqueue("w")
            assert await redis.llen(keys.handoff(pool.id)) == 1
            worker.stop_fetching()  # stopping: it goes back to its queue
        await until(lambda: worker.mailbox.received == 1)
    assert started == []
    assert await redis.zscore(keys.queue("w"), job.id) is not None
    assert await redis.hget(keys.attempts, job.id) is None


async def test_a_refused_hand_off_read_neither_ends_the_worker_nor_its_hand_offs(
    own_redis: Redis, own_url: str, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """-UNBLOCKED (sent to a blocked client when its master becomes a replica, or by CLIENT
    UNBLOCK ... ERROR) ended the mailbox, and with it the worker's run task: its limit watch
    stopped, its loops ran on unseen by the pool's stop. A failover's doing, it is logged as a
    warning (it was an error)."""

    async def unblock(client_id: str) -> None:
        assert await own_redis.execute_command("CLIENT", "UNBLOCK", client_id, "ERROR") == 1
        await until(partial(_blpop_clients, own_redis))  # read again (after a back-off)

    caplog.set_level(logging.WARNING, logger="errands.worker")
    await _disturbed_read_then_hand_off(own_redis, own_url, namespace, unblock)
    failed = [
        r for r in caplog.records if r.getMessage().startswith("hand-off list: Redis calls failing")
    ]
    assert [r.levelno for r in failed] == [logging.WARNING]


async def test_a_hand_off_read_whose_held_connection_is_killed_goes_the_general_way(
    own_redis: Redis, own_url: str, namespace: str
) -> None:
    """The BLPOP runs on a connection the mailbox holds (store/pinned.py); killed while it
    blocks, the read is sent again the general way at once, and the pool still takes
    hand-offs."""

    async def kill(client_id: str) -> None:
        await own_redis.client_kill_filter(_id=client_id)

        async def blocked_again() -> bool:
            return bool(set(await _blpop_clients(own_redis)) - {client_id})

        await until(blocked_again)

    await _disturbed_read_then_hand_off(own_redis, own_url, namespace, kill)


async def _disturbed_read_then_hand_off(
    redis: Redis, redis_url: str, namespace: str, disturb: Callable[[str], Awaitable[None]]
) -> None:
    """One idle pool; ``disturb`` is given the client id of its blocked hand-off read (and
    returns once the pool reads again); then a job enqueued is handed to the pool."""
    keys = Keys(namespace)
    pools, started = make_pools(redis_url, namespace, 1, concurrency=2, poll_interval=QUIET)
    pool = pools[0]
    async with running(pools), Enqueuer(redis, namespace=namespace) as enq:
        await all_idle(redis, keys, pools)
        await until(partial(_blpop_clients, redis))
        [client_id] = await _blpop_clients(redis)
        await disturb(client_id)
        fetch_task = pool._fetch_task
        assert fetch_task is not None and not fetch_task.done()
        await enq.enqueue("w")
        await until(lambda: len(started) == 1, timeout=5)  # not QUIET: handed to it
        assert handed(pool) == 1


async def _blpop_clients(redis: Redis) -> list[str]:
    """Ids of the clients blocked in a BLPOP (the pools' hand-off reads)."""
    return [c["id"] for c in await redis.client_list() if c.get("cmd") == "blpop"]


async def test_a_refused_poke_leaves_the_orphan_sweep_to_wait_for_the_read(
    own_redis: Redis, own_url: str, namespace: str
) -> None:
    """An OOM refusal of the poke's LPUSH escaped Mailbox.quiet(): every orphan sweep failed."""
    keys = Keys(namespace)
    pools, _started = make_pools(own_url, namespace, 1, concurrency=2, poll_interval=QUIET)
    pool = pools[0]
    async with running(pools):
        await all_idle(own_redis, keys, pools)
        worker = pool.worker
        assert worker is not None
        await until(lambda: worker.mailbox._in_flight)
        await own_redis.config_set("maxmemory", 1)  # (noeviction: every LPUSH refused)
        try:
            async with worker.mailbox.quiet():  # the BLPOP in flight ends on its own (1 s)
                assert not worker.mailbox._in_flight
        finally:
            await own_redis.config_set("maxmemory", 0)


async def test_a_poke_no_pop_reads_leaves_no_list_for_good(redis: Redis, namespace: str) -> None:
    """A poke no BLPOP read (the pop ended by its timeout as the poke came, the stop's drain ran
    first, the pool was reaped meanwhile) left the pool's hand-off list for good: the soak of
    seed 12 ended with 13 such lists of pools long gone."""
    keys = Keys(namespace)
    worker: Any = SimpleNamespace(
        scripts=Scripts(redis, keys), keys=keys, pool_id="gone", stopping=True
    )
    mailbox = Mailbox(worker)
    mailbox._in_flight = True  # (as the BLPOP in flight ended on its own)
    await mailbox.poke()
    assert await redis.lrange(keys.handoff("gone"), 0, -1) == [POKE]
    assert 0 < await redis.pttl(keys.handoff("gone")) <= POKE_TTL_MS


async def test_no_hand_off_to_a_pool_whose_heartbeats_are_late(
    own_redis: Redis, namespace: str
) -> None:
    """A pool that died kept its marks up to its idle time (2 x poll_interval + 1 s): a job
    handed to it waited for a reaper (dead_timeout). A hand-off now needs the pool's last
    heartbeat within the age its fetch gave (two heartbeat intervals; default the dead timeout,
    beyond which the pool's own fetch takes nothing)."""
    keys = Keys(namespace)
    sec, usec = await own_redis.time()
    now = sec * 1000 + usec // 1000
    async with Enqueuer(own_redis, namespace=namespace) as enq:
        for age, beat, handed in (
            (4_000, 3_000, True),
            (4_000, 5_000, False),
            (None, 11_000, False),
        ):
            await idle_ghost(own_redis, keys, beat_age_ms=age)
            await own_redis.zadd(keys.pools, {"ghost": now - beat})  # its last beat, so long ago
            await enq.enqueue("w")
            assert len(await handed_to_ghost(own_redis, keys)) == handed, (age, beat)
            await own_redis.flushdb()


class _Flaky:
    """Stands for a connection (or a client) whose calls raise while ``broken``."""

    def __init__(self, reply: Any = None) -> None:
        self.broken, self.calls, self.reply = True, 0, reply

    async def _call(self) -> Any:
        self.calls += 1
        if self.broken:
            raise RedisConnectionError("gone")
        return self.reply

    def send(self, packed: bytes) -> Awaitable[Any]:
        return self._call()

    def blpop(self, keys: list[str], timeout: int) -> Awaitable[Any]:
        return self._call()


async def test_a_broken_held_read_asks_for_the_sweep_and_waits_for_a_general_read(
    redis: Redis, namespace: str
) -> None:
    """A held hand-off read that broke may have popped an entry whose reply was lost: the orphan
    sweep is asked for at once (it waited for the 10 s pass); and the held connection is tried
    again only once a read the general way has succeeded (while Redis could not be reached, a
    turn waited for two reconnects). A general read that broke asks for the sweep as well (it
    waited for the 10 s pass)."""
    keys = Keys(namespace)
    worker: Any = SimpleNamespace(
        scripts=Scripts(redis, keys), keys=keys, pool_id="p", stopping=False, _reclaim=False
    )
    mailbox = Mailbox(worker)
    held, general = _Flaky(), _Flaky(reply=[b"k", b"entry"])
    mailbox._held, worker.scripts = held, SimpleNamespace(redis=general)  # type: ignore[assignment]
    with pytest.raises(RedisConnectionError):
        await mailbox._pop()  # held broken, then the general way broken too
    assert (held.calls, general.calls, worker._reclaim) == (1, 1, True)
    worker._reclaim = False  # (the sweep ran)
    with pytest.raises(RedisConnectionError):
        await mailbox._pop()  # the general way only, until it succeeds
    assert (held.calls, general.calls) == (1, 2)
    assert worker._reclaim  # a general read that broke may have lost its entry too
    general.broken = False
    assert await mailbox._pop() == [b"k", b"entry"]
    held.broken = False
    held.reply = [b"k", b"held"]
    assert await mailbox._pop() == [b"k", b"held"]  # the held connection again
    assert (held.calls, general.calls) == (2, 3)
