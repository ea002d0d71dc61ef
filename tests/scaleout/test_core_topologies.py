"""The core behaviours, each run against one Redis server and against a 3-master Redis Cluster
(``topology_url``): enqueue and process, retry, dead set, scheduled jobs, unique jobs,
max_concurrency, periodic jobs, the reaper, and the Client's admin calls. Everything goes
through ``from_url`` as an application would."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from errands import Client, Enqueuer, FakeClock, FixedBackoff, Job, JobStatus, WorkerPool
from errands.clock import to_ms
from errands.store.keys import Keys
from errands.store.scripts import Scripts
from tests.support.procs import eventually

START = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def make_pool(url: str, namespace: str, **options: object) -> WorkerPool:
    defaults: dict[str, object] = {
        "heartbeat_interval": 0.25,
        "dead_timeout": 1.0,
        "shutdown_grace": 1.0,
        "poll_interval": 0.1,
    }
    return WorkerPool.from_url(url, namespace=namespace, **{**defaults, **options})  # type: ignore[arg-type]


async def test_enqueue_process_and_results(topology_url: str, namespace: str) -> None:
    pool = make_pool(topology_url, namespace, concurrency=8)

    @pool.job("add")
    async def add(job: Job, a: int, b: int) -> int:
        return a + b

    async with (
        Enqueuer.from_url(topology_url, namespace=namespace) as enqueuer,
        Client.from_url(topology_url, namespace=namespace) as client,
        pool,
    ):
        first = await enqueuer.enqueue("add", {"a": 1, "b": 2})
        assert first is not None
        assert await client.result(first.id, timeout=10) == 3
        jobs = await enqueuer.enqueue_many([("add", {"a": i, "b": i}) for i in range(50)])
        await pool.drain(timeout=20)
        results = [await client.result(j.id, timeout=5) for j in jobs]
        assert results == [2 * i for i in range(50)]
        info = await client.job(jobs[-1].id)
        assert info is not None and info.status == JobStatus.FINISHED
        assert (await client.queue_sizes())["add"] == {
            "queued": 0,
            "scheduled": 0,
            "retry": 0,
            "running": 0,
        }


async def test_retry_dead_and_dead_set_admin(topology_url: str, namespace: str) -> None:
    clock = FakeClock(START)
    pool = make_pool(topology_url, namespace, clock=clock)
    attempts: dict[str, int] = {}

    @pool.job("flaky", max_fails=3, backoff=FixedBackoff(0))
    async def flaky(job: Job) -> str:
        attempts[job.id] = attempts.get(job.id, 0) + 1
        if attempts[job.id] < 2:
            raise RuntimeError("first try fails")
        return "ok"

    @pool.job("doomed", max_fails=2, backoff=FixedBackoff(0))
    async def doomed(job: Job) -> None:
        attempts[job.id] = attempts.get(job.id, 0) + 1
        raise ValueError("always fails")

    async with (
        Enqueuer.from_url(topology_url, namespace=namespace, clock=clock) as enqueuer,
        Client.from_url(topology_url, namespace=namespace, clock=clock) as client,
    ):
        ok = await enqueuer.enqueue("flaky")
        bad = await enqueuer.enqueue("doomed")
        assert ok is not None and bad is not None
        async with pool:
            await pool.drain(timeout=20)
            assert attempts == {ok.id: 2, bad.id: 2}
            assert await client.result(ok.id, timeout=5) == "ok"
            assert await client.dead_count() == 1
            dead = await client.dead_jobs()
            assert [j.id for j in dead.items] == [bad.id]
            assert await client.retry_dead_job(bad.id)  # back on its queue: fails twice more
            await pool.drain(timeout=20)
            assert attempts[bad.id] == 4
            assert await client.delete_all_dead_jobs() == 1
            assert await client.dead_count() == 0


async def test_scheduled_jobs_run_when_due(topology_url: str, namespace: str) -> None:
    clock = FakeClock(START)
    pool = make_pool(topology_url, namespace, clock=clock)
    ran: list[str] = []

    @pool.job("later")
    async def later(job: Job) -> None:
        ran.append(job.id)

    async with (
        Enqueuer.from_url(topology_url, namespace=namespace, clock=clock) as enqueuer,
        Client.from_url(topology_url, namespace=namespace, clock=clock) as client,
        pool,
    ):
        soon = await enqueuer.enqueue("later", delay=60)
        cancelled = await enqueuer.enqueue("later", delay=timedelta(hours=1))
        assert soon is not None and cancelled is not None
        await pool.drain(timeout=10)
        assert ran == []
        assert (await client.scheduled_jobs()).total == 2
        assert await client.cancel(cancelled.id) == "cancelled"
        clock.advance(61)
        await pool.drain(timeout=10)
        assert ran == [soon.id]
        clock.advance(7200)
        await pool.drain(timeout=10)
        assert ran == [soon.id]


async def test_unique_jobs(topology_url: str, namespace: str) -> None:
    pool = make_pool(topology_url, namespace)
    seen: list[dict[str, object]] = []

    @pool.job("sync")
    async def sync(job: Job) -> None:
        seen.append(dict(job.args))

    async with Enqueuer.from_url(topology_url, namespace=namespace) as enqueuer:
        first = await enqueuer.enqueue_unique("sync", {"user": 1})
        assert first is not None
        assert await enqueuer.enqueue_unique("sync", {"user": 1}) is None
        keyed = await enqueuer.enqueue_unique("sync", {"v": 1}, key="k")
        assert keyed is not None
        # the waiting job takes the newer args (replace_envelope)
        assert await enqueuer.enqueue_unique("sync", {"v": 2}, key="k") is None
        async with pool:
            await pool.drain(timeout=10)
        assert sorted(seen, key=str) == [{"user": 1}, {"v": 2}]
        # the lock went with the start of the job: the same args may be enqueued again
        assert await enqueuer.enqueue_unique("sync", {"user": 1}) is not None


async def test_max_concurrency_across_two_pools(topology_url: str, namespace: str) -> None:
    running = 0
    most = 0

    def pool_with_limit() -> WorkerPool:
        pool = make_pool(topology_url, namespace, concurrency=10)

        @pool.job("limited", max_concurrency=2)
        async def limited(job: Job) -> None:
            nonlocal running, most
            running += 1
            most = max(most, running)
            await asyncio.sleep(0.02)
            running -= 1

        return pool

    async with Enqueuer.from_url(topology_url, namespace=namespace) as enqueuer:
        await enqueuer.enqueue_many([("limited", {"i": i}) for i in range(20)])
        first, second = pool_with_limit(), pool_with_limit()
        async with first, second:
            await asyncio.gather(first.drain(timeout=20), second.drain(timeout=20))
    assert most == 2


async def test_periodic_schedules(topology_url: str, namespace: str) -> None:
    clock = FakeClock(START + 5)
    pool = make_pool(topology_url, namespace, clock=clock)
    fired: list[tuple[str, float]] = []

    @pool.job("report")
    async def report(job: Job) -> None:
        fired.append((job.meta["schedule"], job.meta["fire_time"]))

    pool.every(600, "report", name="ten-minutes")
    async with Client.from_url(topology_url, namespace=namespace, clock=clock) as client:
        await client.add_schedule("hourly", "report", "@hourly")
        async with pool:
            assert pool.periodic is not None
            await pool.periodic.refresh()
            await pool.periodic.tick_once()  # schedules start from now
            for _ in range(12):  # two hours in 10-minute steps
                clock.advance(600)
                await pool.periodic.tick_once()
            await pool.drain(timeout=20)
        infos = {s.name: s for s in await client.schedules()}
        clock.advance(86_400)  # no pool registers "ten-minutes" lately: its code is gone
        await client.add_schedule("ten-minutes", "report", "@daily")  # (WATCHes both keys)
        replaced = await client.schedule("ten-minutes")
    assert (replaced.source, replaced.spec) == ("runtime", "@daily")
    assert sorted(t for n, t in fired if n == "ten-minutes") == [
        START + 600 * k for k in range(1, 13)
    ]
    assert sorted(t for n, t in fired if n == "hourly") == [START + 3600, START + 7200]
    assert set(infos) == {"ten-minutes", "hourly"}


async def test_reaper_gives_back_the_jobs_of_a_dead_pool(topology_url: str, namespace: str) -> None:
    """A pool that took a job and stopped beating (a ghost, driven through the scripts) is
    reaped by a live pool, which then runs the job."""
    # beats every 0.5 s: a reaper reaps once its own beats ran a dead timeout without a stall
    # longer than one interval, which a loaded test machine must not make impossible
    pool = make_pool(topology_url, namespace, heartbeat_interval=0.5, dead_timeout=1.0)
    ran: list[str] = []

    @pool.job("work")
    async def work(job: Job) -> None:
        ran.append(job.id)

    async with Enqueuer.from_url(topology_url, namespace=namespace) as enqueuer:
        job = await enqueuer.enqueue("work")
        assert job is not None
        scripts = Scripts(enqueuer.redis, Keys(namespace))
        await scripts.heartbeat("ghost", b"{}", 60_000, mode="register")
        fetched = await scripts.fetch("ghost", to_ms(enqueuer.clock.now()), 10, [("work", 0)])
        assert [f.id for f in fetched] == [job.id]
        async with pool:
            assert pool.reaper is not None
            reaper = pool.reaper

            async def reaped_job_ran() -> bool:
                # reap now rather than at the reaper's next round (either may do it)
                await reaper.reap_once()
                return ran == [job.id]

            # the ghost's beat ages past the dead timeout while the live pool's beats settle
            await eventually(reaped_job_ran, 20, "the ghost reaped and its job run")
        assert reaper.requeued == 1
        assert await enqueuer.redis.zscore(Keys(namespace).pools, "ghost") is None


async def test_client_admin_calls(topology_url: str, namespace: str) -> None:
    """The inspection pipelines, events, pause and cancel work on every topology."""
    pool = make_pool(topology_url, namespace)
    gate = asyncio.Event()

    @pool.job("slow")
    async def slow(job: Job) -> str:
        await job.checkin("halfway")
        await gate.wait()
        return "done"

    async with (
        Enqueuer.from_url(topology_url, namespace=namespace) as enqueuer,
        Client.from_url(topology_url, namespace=namespace) as client,
    ):
        await client.pause("slow")
        assert await client.paused() == {"slow"}
        queued = [await enqueuer.enqueue("slow", {"i": i}) for i in range(3)]
        assert all(j is not None for j in queued)
        async with client.events() as events, pool:
            await client.unpause("slow")
            got: list[str] = []
            async with asyncio.timeout(10):
                async for event in events:
                    got.append(event["event"])
                    if got.count("started") == 3:
                        break

            async def three_workers() -> bool:
                return len(await client.workers()) == 3

            await eventually(three_workers, 10, "3 workers shown")
            assert len(await client.worker_pools()) == 1
            [queue] = [q for q in await client.queues() if q.name == "slow"]
            assert queue.running == 3
            counts = await client.count_by_status()
            assert counts[JobStatus.IN_PROGRESS] == 3
            gate.set()
            await pool.drain(timeout=10)
        assert (await client.history()).total == 3
        assert (await client.stats())["processed"] >= 3
        info = await client.redis_info()
        assert info["version"]
        assert await client.job_names() == ["slow"]
