"""The idle batch loop's wake-ups and idle mark (worker/batchwait.py) beyond the cases of
test_batch_idle.py: which wake-ups make it look, its mark when the pool goes quiet, the jobs a
full batch leaves. ``poll_interval`` is an hour here: only a wake-up starts a batch in time."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis

from errands import Enqueuer, Job, WorkerPool
from errands.store.keys import Keys
from errands.worker.batching import Batching
from errands.worker.batchwait import BatchWaiting
from errands.worker.notifier import Notifier
from tests.support.procs import eventually

HOUR = 3600.0


def _pool(redis: Redis, namespace: str, ran: list[list[str]], **options: Any) -> WorkerPool:
    pool = WorkerPool(redis, namespace=namespace, concurrency=2, poll_interval=HOUR)

    @pool.batch_job("b", **options)
    async def b(jobs: list[Job]) -> None:
        ran.append([job.id for job in jobs])

    return pool


async def test_unrelated_namespace_wake_ups_do_not_make_the_batch_loop_look(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The namespace's wake channel carries wake-ups of every name ('slot' from ack.lua when a
    concurrency-limited job ends while a pool is idle, 'settle', 'requeue', 'reap', 'move',
    'enqueue' of schedules, 'dedup', 'workflow'): each one made every batch loop of every pool
    look at its queue (a 5-command pipeline), so the looks follow the namespace's traffic (up
    to one a round-trip a loop), not the enqueues of the batch's name, which docs/long-jobs.md
    says wake it. The loops looked every max_wait / 4 before, whatever the traffic."""
    looks, sleeping, dispatched, looks_then = [0], [False], [0], [0]
    peek, sleep, dispatch = Batching._peek, Batching._batch_sleep, Notifier._dispatch

    async def spy_peek(worker: Batching, *args: Any) -> Any:
        looks[0] += 1
        return await peek(worker, *args)

    async def spy_sleep(worker: Batching, *args: Any) -> None:
        sleeping[0] = True
        try:
            await sleep(worker, *args)
        finally:
            sleeping[0] = False

    def spy_dispatch(notifier: Notifier, message: dict[str, Any]) -> None:
        dispatched[0] += 1
        looks_then[0] = looks[0]
        dispatch(notifier, message)

    monkeypatch.setattr(Batching, "_peek", spy_peek)
    monkeypatch.setattr(Batching, "_batch_sleep", spy_sleep)
    monkeypatch.setattr(Notifier, "_dispatch", spy_dispatch)
    ran: list[list[str]] = []
    pool = _pool(redis, namespace, ran, max_size=1, max_wait=0)
    async with pool:

        async def asleep() -> bool:
            return dispatched[0] > 0 and looks[0] > looks_then[0] and sleeping[0]

        # a wake-up of the pool (as an enqueue's), once subscribed: the loop looks since the
        # last wake-up heard, then sleeps
        channel = pool.keys.pool_wake_channel(pool.id)

        async def subscribed() -> bool:
            return bool((await redis.pubsub_numsub(channel))[0][1])

        await eventually(subscribed, 5, "the pool subscribed to its wake channel")
        await redis.publish(channel, "job")
        await eventually(asleep, 5, "the batch loop asleep after a wake-up")
        before = looks[0]
        for n in range(20):  # (one at a time: as a stream of acks of a limited name)
            await redis.publish(pool.keys.wake_channel, "slot")

            async def heard(n: int = n) -> bool:
                return dispatched[0] > n + 1

            await eventually(heard, 5, "the wake-up heard by the pool")
        async with Enqueuer(redis, namespace=namespace) as enqueuer:
            await enqueuer.enqueue("b", {}, job_id="j")

        async def started() -> bool:
            return ran == [["j"]]

        await eventually(started, 5, "the batch of the job enqueued")
        await eventually(asleep, 5, "the batch loop asleep after the batch")
        # the enqueue's wake-up, and the look after the batch
        looked = looks[0] - before
        assert looked <= 2, f"{looked} looks for 20 wake-ups of no batch name and 1 enqueue"


@pytest.mark.parametrize(
    ("own", "data", "woken"),
    [
        (True, "job", True),  # lib/wake.lua: an enqueue, promote, retry, workflow release, ...
        (False, "unpause", True),  # admin/client.py
        (False, "batch", True),  # a wake-up passed on (batchwait.py)
        (False, "reap", True),  # reap.lua: its requeued jobs wake no pool of their name
        (False, "dedup", True),  # lib/dedup.lua: a rerun queued by ack, reap or destroy
        (False, "workflow", True),  # lib/wfqueue.lua: its name's idle key of another type
        (False, "slot", False),  # ack.lua: a slot freed
        (False, "settle", False),  # (settle.lua, move.lua, schedule_fire.lua: given the
        (False, "requeue", False),  # name's idle ZSET, they wake one of its pools instead)
        (False, "move", False),
        (False, "enqueue", False),
    ],
)
async def test_the_batch_loops_wake_for_the_wake_ups_that_bring_their_jobs(
    namespace: str, own: bool, data: str, woken: bool
) -> None:
    """The namespace's channel wakes the batch loops only for its messages that may bring a job
    to a batch name; the pool's own channel, and a (re)subscription, always."""
    worker = BatchWaiting()
    worker.keys = Keys(namespace)
    worker._batch_wakes = (asyncio.Event(), asyncio.Event())
    channel = worker.keys.pool_wake_channel("p") if own else worker.keys.wake_channel
    worker.batch_woken(channel, data)
    assert [e.is_set() for e in worker._batch_wakes] == [woken, woken]
    worker._batch_wakes[0].clear()
    worker.batch_woken("", "")  # (the Notifier's wake after (re)subscribing; go_quiet)
    assert worker._batch_wakes[0].is_set()


async def test_a_pool_going_quiet_during_a_look_leaves_no_idle_mark(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The look's pipeline (its ZADD of the idle mark) lands after the quiet pool's fetch loop
    took the batch marks away (_batch_unmark_all: seen.marked set False, ZREM). The loop then
    sees ``seen.marked`` False and takes nothing away: the quiet pool keeps a live mark
    (deadline 2 * poll_interval + 1 s ahead), which the next enqueue pops, its wake-up sent to
    a pool that does not look; the other idle pool is not woken and the job waits for its poll
    (an hour here)."""
    ran: list[list[str]] = []
    other = _pool(redis, namespace, ran, max_size=1, max_wait=0)
    quieting = _pool(redis, namespace, ran, max_size=1, max_wait=0)
    peek = Batching._peek
    looks: dict[str, int] = {}
    race = [False]

    async def racing_peek(worker: Batching, *args: Any) -> Any:
        looks[worker.pool_id] = looks.get(worker.pool_id, 0) + 1
        if race[0] and worker.pool_id == quieting.id:
            race[0] = False
            await quieting.quiet()  # (returns once its idle marks are taken away)
        return await peek(worker, *args)

    monkeypatch.setattr(Batching, "_peek", racing_peek)
    async with other:

        async def other_asleep() -> bool:
            return looks.get(other.id, 0) == 1

        await eventually(other_asleep, 5, "the other pool's batch loop asleep")
        async with quieting:

            async def quieting_asleep() -> bool:
                return looks.get(quieting.id, 0) == 1

            await eventually(quieting_asleep, 5, "the quieting pool's batch loop asleep")
            race[0] = True  # its next look: the pool goes quiet before its pipeline is sent
            await redis.publish(quieting.keys.pool_wake_channel(quieting.id), "job")

            async def raced() -> bool:
                return not race[0] and looks.get(quieting.id, 0) == 2

            await eventually(raced, 5, "the look during which the pool went quiet")
            key = quieting.keys.idle_for("b")

            async def unmarked() -> bool:
                return await redis.zscore(key, quieting.id) is None

            await eventually(unmarked, 3, "the quiet pool's idle mark of 'b' taken away")
            async with Enqueuer(redis, namespace=namespace) as enqueuer:
                await enqueuer.enqueue("b", {}, job_id="j")

            async def started() -> bool:
                return ran == [["j"]]

            await eventually(started, 5, "the batch run by the pool that is not quiet")


async def test_a_full_batch_left_by_a_full_fetch_wakes_the_other_idle_pool(
    redis: Redis, namespace: str
) -> None:
    """One enqueue_many of two full batches wakes one pool (one wake-up a name a call); the
    full fetch of that pool wakes the next idle pool of the name (lib/fetchmarks.lua
    fetch_unmark) only while the idle SET holds a pool, which a batch look does not join (its
    mark is in the name's idle ZSET only). With every pool's fetch loop busy (no pool in the
    idle SET), the second full batch waits while the other pool's batch loop sleeps, marked idle
    for the name: for its ``poll_interval`` (an hour here; it looked every ``max_wait / 4``
    before c13ee8e, 250 ms with the default ``max_wait``)."""
    running: dict[str, list[str]] = {}
    hold = asyncio.Event()
    pools = []
    for _ in range(2):
        pool = WorkerPool(redis, namespace=namespace, concurrency=1, poll_interval=HOUR)

        def register(pool: WorkerPool) -> None:
            @pool.batch_job("b", max_size=2, max_wait=HOUR)
            async def b(jobs: list[Job]) -> None:
                running[pool.id] = [job.id for job in jobs]
                await hold.wait()

            @pool.job("p")
            async def p(job: Job) -> None:
                await hold.wait()

        register(pool)
        pools.append(pool)
    async with pools[0], pools[1], Enqueuer(redis, namespace=namespace) as enqueuer:
        try:
            for pool in pools:

                async def marked(pool: WorkerPool = pool) -> bool:
                    return await redis.zscore(pool.keys.idle_for("b"), pool.id) is not None

                await eventually(marked, 5, "the batch loop asleep, marked idle for b")
            await enqueuer.enqueue("p", {}, job_id="p1")
            await enqueuer.enqueue("p", {}, job_id="p2")

            async def busy() -> bool:  # (each pool's one slot: a plain job runs)
                return await redis.scard(pools[0].keys.idle) == 0

            await eventually(busy, 5, "both fetch loops busy")
            await enqueuer.enqueue_many([("b", {}, {"job_id": f"j{n}"}) for n in range(4)])

            async def both() -> bool:
                return len(running) == 2

            await eventually(both, 5, "two full batches running, one in each pool")
        finally:
            hold.set()


# (not with 3 jobs, one left: the other pool, woken by the fetch, may mark itself idle again
# before the fetching pool counts the marks, and then the pass-on is right; a race either way)
@pytest.mark.parametrize("jobs", [2])
async def test_a_full_fetch_passes_no_wake_up_on_when_no_idle_pool_needs_it(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch, jobs: int
) -> None:
    """A full batch fetch wakes every idle pool ("batch" on the namespace's channel) only when
    it left jobs on the queue while a pool is still marked idle for the name, not after every
    full fetch (each such wake-up wakes every pool's loops): with 2 jobs none is left; with 3,
    one is, but the fetch woke the other pool itself (its fetch loop is idle, in the idle SET:
    lib/fetchmarks.lua's fetch_unmark popped its mark). test_a_full_batch_left_... above: the
    case where the wake-up is passed on."""
    passed_on = asyncio.Event()
    pass_on = Batching._batch_pass_on

    async def spy(worker: Batching, name: str) -> None:
        await pass_on(worker, name)
        passed_on.set()

    monkeypatch.setattr(Batching, "_batch_pass_on", spy)
    ran: list[list[str]] = []
    other = _pool(redis, namespace, ran, max_size=2, max_wait=HOUR)
    fetching = _pool(redis, namespace, ran, max_size=2, max_wait=HOUR)
    async with redis.pubsub() as pubsub, other:
        await pubsub.subscribe(other.keys.wake_channel)
        async with fetching, Enqueuer(redis, namespace=namespace) as enqueuer:
            for pool in (other, fetching):

                async def marked(pool: WorkerPool = pool) -> bool:
                    return await redis.zscore(pool.keys.idle_for("b"), pool.id) is not None

                await eventually(marked, 5, "the batch loop asleep, marked idle for b")
            await enqueuer.enqueue_many([("b", {}, {"job_id": f"j{n}"}) for n in range(jobs)])
            await asyncio.wait_for(passed_on.wait(), 5)
            await redis.publish(other.keys.wake_channel, "end")  # (after the pass-on's)
            heard: list[bytes] = []
            async with asyncio.timeout(5):
                while not heard or heard[-1] != b"end":
                    message = await pubsub.get_message(timeout=1)  # (None: its subscription's)
                    if message is not None and message["type"] == "message":
                        heard.append(message["data"])
            assert b"batch" not in heard
