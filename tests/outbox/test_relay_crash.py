"""kill -9 of the relay between claiming rows and Redis having them, and between Redis having
them and the delete's commit: each committed row still becomes exactly one job, rolled-back
ones never. And 10,000 rows committed by 8 concurrent writers, relayed by processes killed at
random, all arrive."""

from __future__ import annotations

import asyncio
import os
import random
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest
from redis.asyncio import Redis

from errands import Job, WorkerPool
from errands.store.keys import Keys
from tests.support.invariants import assert_invariants

pytest.importorskip("sqlalchemy")
pytest.importorskip("aiosqlite")

from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from errands.contrib.sqlalchemy_outbox import enqueue_in_outbox
from tests.outbox.test_relay import make_table, rows_left, write

pytestmark = pytest.mark.faults
ROOT = Path(__file__).resolve().parents[2]


async def relay_process(
    database: str, redis_url: str, namespace: str, point: str, nth: int
) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.outbox.crash_relay", database, redis_url, namespace, point,
        str(nth), env=env, cwd=ROOT,
    )  # fmt: skip


async def run_relay(database: str, redis_url: str, namespace: str, point: str, nth: int) -> int:
    proc = await relay_process(database, redis_url, namespace, point, nth)
    async with asyncio.timeout(60):
        return await proc.wait()


async def run_all_once(redis_url: str, namespace: str, expected: set[str]) -> Counter[str]:
    """Run every stored job through a pool; how often each job id ran."""
    pool = WorkerPool.from_url(redis_url, namespace=namespace)
    runs: Counter[str] = Counter()

    @pool.job("welcome")
    async def welcome(job: Job) -> None:
        runs[job.id] += 1

    await pool.drain(timeout=60)
    return runs


async def test_kill_between_claim_and_enqueue_and_between_enqueue_and_commit(
    database: tuple[str, str], redis_url: str, namespace: str, redis: Redis
) -> None:
    sync_url, async_url = database
    make_table(sync_url)
    committed = write(sync_url, 400)
    rolled_back = write(sync_url, 100, commit=False)
    for point, nth in [("claim", 1), ("enqueue", 1), ("enqueue", 3), ("claim", 2)]:
        code = await run_relay(async_url, redis_url, namespace, point, nth)
        assert code == -9, (point, nth)
    assert await run_relay(async_url, redis_url, namespace, "none", 0) == 0
    assert await rows_left(sync_url) == 0
    keys = Keys(namespace)
    assert {k.decode() for k in await redis.hkeys(keys.jobs)} == set(committed)
    assert await redis.zcard(keys.queue("welcome")) == len(committed)
    runs = await run_all_once(redis_url, namespace, set(committed))
    assert set(runs) == set(committed)
    assert set(runs.values()) == {1}
    assert not set(rolled_back) & set(runs)
    await assert_invariants(redis, namespace)


@pytest.mark.slow
async def test_10000_rows_by_8_writers_with_relays_killed_at_random(
    pg_server: str, redis_url: str, namespace: str, redis: Redis
) -> None:
    """Run under the heavy lock: 8 writer threads commit 10,000 rows (in transactions of 50,
    with rolled-back ones between), while two relay processes are killed with SIGKILL at random
    and restarted."""
    from tests.outbox.conftest import new_pg_database

    base = new_pg_database(pg_server)
    sync_url, async_url = f"postgresql+psycopg://{base}", f"postgresql+psycopg://{base}"
    make_table(sync_url)
    committed: list[str] = []
    rolled_back: list[str] = []
    lock = threading.Lock()

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        engine = create_engine(sync_url, pool_size=1)
        done = 0
        with Session(engine) as session:
            while done < 1250:
                ids = [enqueue_in_outbox(session, "welcome", {"w": seed}) for _ in range(50)]
                if rng.random() < 0.2:
                    session.rollback()
                    with lock:
                        rolled_back.extend(ids)
                    continue
                session.commit()
                done += 50
                with lock:
                    committed.extend(ids)
        engine.dispose()

    writers = [asyncio.to_thread(writer, seed) for seed in range(8)]
    writing = asyncio.gather(*writers)
    relays = [await relay_process(async_url, redis_url, namespace, "loop", 0) for _ in range(2)]
    kills = 0
    rng = random.Random(22)
    try:
        while not writing.done() or await rows_left(sync_url):
            # often enough for >= 10 kills while the rows are written, on a quiet machine too
            await asyncio.sleep(rng.uniform(0.05, 0.25))
            if writing.done() and kills >= 10:
                continue  # the last rows: let the relays finish
            victim = rng.randrange(len(relays))
            relays[victim].kill()
            await relays[victim].wait()
            kills += 1
            relays[victim] = await relay_process(async_url, redis_url, namespace, "loop", 0)
        await writing
    finally:
        for proc in relays:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert kills >= 10
    assert len(committed) == 10_000
    keys = Keys(namespace)
    stored = {k.decode() for k in await redis.hkeys(keys.jobs)}
    assert stored == set(committed)
    assert await redis.zcard(keys.queue("welcome")) == 10_000
    assert not set(rolled_back) & stored
    await assert_invariants(redis, namespace)
