"""The defaults and timings docs/reliability.md and docs/workers.md give, as a pool holds
them: the defaults, the reaper's period ``max(0.1, min(heartbeat_interval, dead_timeout / 8))``,
the heartbeat thread's socket timeout (the heartbeat interval, at least 1 s, at most the
client's own), and a ``dead_timeout`` just under twice ``heartbeat_interval`` refused, twice it
taken (tests/worker/test_bad_input.py refuses one far under it)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from errands import Job, RegistrationError, WorkerPool
from errands.store.keys import Keys
from errands.worker import lookahead, reaper, shutdown
from errands.worker.notifier import Notifier


async def handler(job: Job) -> None:
    return None


def test_the_documented_defaults() -> None:
    """The defaults of docs/reliability.md and of the options table of docs/workers.md."""
    pool = WorkerPool(url="redis://localhost:1/0")
    assert (pool.namespace, pool.concurrency, pool.shutdown_grace) == ("errands", 10, 30.0)
    assert (pool.poll_interval, pool.schedule_refresh) == (1.0, 2.0)
    assert (pool.history, pool.redis_functions) == (True, True)
    assert (pool.heartbeat_interval, pool.dead_timeout, pool.max_recoveries) == (2.0, 10.0, 3)
    assert (pool.dead_max_jobs, pool.dead_max_age) == (10_000, 180 * 86400.0)
    assert (pool.history_max, pool.history_retention) == (100_000, 15 * 86400.0)
    pool.register("j", handler)
    assert pool.job_types["j"].result_ttl == 86400.0


@pytest.mark.parametrize(("heartbeat", "dead"), [(2.0, 3.9), (1.0, 1.999), (0.5, 0.25)])
def test_a_dead_timeout_under_twice_the_heartbeat_interval_is_refused(
    heartbeat: float, dead: float
) -> None:
    with pytest.raises(RegistrationError, match="at least twice heartbeat_interval"):
        WorkerPool(url="redis://localhost:1/0", heartbeat_interval=heartbeat, dead_timeout=dead)
    WorkerPool(
        url="redis://localhost:1/0", heartbeat_interval=heartbeat, dead_timeout=heartbeat * 2
    )


@pytest.mark.parametrize(
    ("heartbeat", "dead", "period", "beat_timeout"),
    [
        (None, None, 1.25, 2.0),  # the defaults: 2 s and 10 s
        (0.5, 8.0, 0.5, 1.0),
        (0.05, 0.5, 0.1, 1.0),
    ],
)
async def test_the_reaper_period_and_the_heartbeat_timeout(
    redis: Redis,
    namespace: str,
    heartbeat: float | None,
    dead: float | None,
    period: float,
    beat_timeout: float,
) -> None:
    if heartbeat is None or dead is None:
        pool = WorkerPool(redis, namespace=namespace)
    else:
        pool = WorkerPool(
            redis, namespace=namespace, heartbeat_interval=heartbeat, dead_timeout=dead
        )
    pool.register("j", handler)
    async with pool:
        assert pool.reaper is not None and pool.heartbeater is not None
        assert pool.reaper.interval == pytest.approx(period)
        client = pool.heartbeater._client
        assert isinstance(client, SyncRedis)
        beats = client.connection_pool.connection_kwargs
        assert beats["socket_timeout"] == pytest.approx(beat_timeout)


async def test_the_documented_periods(redis: Redis, namespace: str) -> None:
    """docs/reliability.md: orphans reclaimed every 10 s, parked acks and settles sent again
    about once a minute, a job fetched ahead given back after 0.2 s (0.02 s with a rate), a
    quiet subscription pinged after at most 5 s, a reap call taking at most 500 entries (the
    tests shorten them all)."""
    assert (lookahead.BUFFER_MAX_WAIT, lookahead.RATED_BUFFER_MAX_WAIT) == (0.2, 0.02)
    assert reaper.BATCH == 500  # in-progress entries a reap call takes at most
    assert shutdown.CANCEL_WAIT == 5.0  # docs/workers.md: after the grace, for cancelled jobs
    assert Notifier.ping_interval == 5.0
    pool = WorkerPool(redis, namespace=namespace)
    pool.register("j", handler)
    async with pool:
        assert pool.worker is not None
        assert (pool.worker.reclaim_interval, pool.worker.parked_interval) == (10.0, 60.0)


@pytest.mark.parametrize(("concurrency", "batch"), [(10, 10), (256, 256), (1000, 256)])
async def test_a_fetch_asks_for_at_most_256_jobs(
    redis: Redis, namespace: str, concurrency: int, batch: int
) -> None:
    """docs/workers.md: one fetch call for as many jobs as the pool has free slots, at most 256."""
    pool = WorkerPool(redis, namespace=namespace, concurrency=concurrency)
    pool.register("j", handler)
    async with pool:
        assert pool.worker is not None and pool.worker.batch == batch


async def test_an_idle_mark_lasts_twice_the_poll_interval_and_a_second(
    redis: Redis, namespace: str
) -> None:
    """docs/workers.md: an idle pool's mark (score: minus its deadline in ms on the Redis
    clock) is due 2 x poll_interval + 1 s after the fetch that made it."""
    keys = Keys(namespace)
    pool = WorkerPool(redis, namespace=namespace, poll_interval=3.0)
    pool.register("j", handler)
    async with pool:
        deadline = None
        for _ in range(200):
            score = await redis.zscore(keys.idle_for("j"), pool.id)
            if score is not None:
                deadline = -score
                break
            await asyncio.sleep(0.01)
        assert deadline is not None
        seconds, micros = await redis.time()
        left = deadline - (seconds * 1000 + micros // 1000)
        assert 7_000 - 1_000 < left <= 7_000, left


@pytest.mark.parametrize(("draw", "factor"), [(0.0, 0.75), (0.5, 1.0), (1 - 1e-12, 1.25)])
async def test_the_reaper_sleeps_its_period_with_25_percent_jitter(
    monkeypatch: pytest.MonkeyPatch, draw: float, factor: float
) -> None:
    """docs/reliability.md: the reaper runs every period "with ±25 % jitter": each sleep is the
    period times 0.75 to 1.25, by the draw of random()."""
    slept: list[float] = []

    class Stop(Exception):
        pass

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        raise Stop

    monkeypatch.setattr(reaper, "asyncio", SimpleNamespace(sleep=sleep))
    monkeypatch.setattr(reaper, "random", SimpleNamespace(random=lambda: draw))
    one = reaper.Reaper(None, None, "p", None, 10.0, 1.25, 3)  # type: ignore[arg-type]
    with pytest.raises(Stop):
        await one.run()
    assert slept == [pytest.approx(1.25 * factor)]
