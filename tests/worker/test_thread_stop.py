"""Stopping a pool while plain-def handlers run (issue 16 "shutdown with plain def handlers",
issue 12 defect 5). One rule, docs/workers.md#plain-def-handlers-and-shutdown: a thread cannot
be interrupted, so its job is released only once the thread has ended, and never runs twice at
once. The CLI exits after one grace (the thread dies with it, the job is recovered elsewhere);
an embedded ``await pool.stop()`` waits for the thread, heartbeating; a cancelled ``stop()``
keeps heartbeating until the thread returns. Every case runs real processes."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from errands import Enqueuer, Job, WorkerPool
from errands.store.keys import Keys
from tests.support.procs import Procs, eventually, live_pools, records


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    with Procs(tmp_path) as p:
        yield p


async def enqueue(redis_url: str, namespace: str, name: str, seconds: float) -> str:
    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        job = await enqueuer.enqueue(name, {"seconds": seconds})
    assert job is not None
    return job.id


async def started(redis: Redis, namespace: str, *ids: str) -> None:
    async def probe() -> bool:
        seen = {r["id"] for r in await records(redis, namespace, "starts")}
        return seen.issuperset(ids)

    await eventually(probe, 15, f"jobs {ids} to start")


def recovering_pool(redis_url: str, namespace: str, ran: list[tuple[str, float]]) -> WorkerPool:
    """A second pool with a short dead timeout: it takes jobs back as soon as it may, and
    records when it ran them."""
    pool = WorkerPool.from_url(
        redis_url, namespace=namespace, heartbeat_interval=0.25, dead_timeout=1.0
    )

    @pool.job("sync_work")
    def sync_work(job: Job, seconds: float) -> None:
        ran.append((job.id, time.time()))

    return pool


async def test_cli_stop_takes_one_grace_and_says_the_thread_job_is_left(
    procs: Procs, redis_url: str, namespace: str, redis: Redis
) -> None:
    keys = Keys(namespace)
    job_id = await enqueue(redis_url, namespace, "sync_work", 30)
    proc = procs.worker("threads:pool", redis_url, namespace)
    await started(redis, namespace, job_id)
    [doomed] = await live_pools(redis, namespace)
    began = time.monotonic()
    proc.send(signal.SIGTERM)
    assert await proc.wait(timeout=20) == 0, proc.output()
    took = time.monotonic() - began
    exited = time.time()
    output = proc.output()
    # the grace (0.5 s) once, not twice, and no wait for the 30 s thread
    assert took < 0.5 + 1.5, f"exited {took:.2f}s after SIGTERM\n{output}"
    assert "1 still running in threads" in output, output
    assert "exiting without waiting for 1 plain def handler" in output, output
    assert f"sync_work {job_id}" in output, output
    assert "requeued" not in output.replace("0 requeued", ""), output
    assert "stopped after 0 jobs" in output, output
    assert await redis.zrange(keys.in_progress(doomed), 0, -1) == [f"{job_id}:sync_work".encode()]
    ran: list[tuple[str, float]] = []
    async with recovering_pool(redis_url, namespace, ran):
        await eventually(lambda: _true(ran), 10, "the job to be recovered")
    [(again, at)] = ran
    assert again == job_id and at > exited  # after the process (and its thread) had gone
    assert await redis.hget(keys.stats, "failed") is None


async def test_second_signal_ends_the_grace_and_does_not_wait_for_the_thread(
    procs: Procs, redis_url: str, namespace: str, redis: Redis
) -> None:
    keys = Keys(namespace)
    sync_id = await enqueue(redis_url, namespace, "sync_work", 30)
    async_id = await enqueue(redis_url, namespace, "work", 30)
    proc = procs.worker("threads:pool", redis_url, namespace, env={"TEST_GRACE": "30"})
    await started(redis, namespace, sync_id, async_id)
    proc.send(signal.SIGINT)
    await eventually(lambda: _true("received: stopping" in proc.output()), 5, "the first line")
    assert "Ctrl-C again, or another SIGTERM, stops at once" in proc.output()
    began = time.monotonic()
    proc.send(signal.SIGINT)
    assert await proc.wait(timeout=20) == 0, proc.output()
    took = time.monotonic() - began
    output = proc.output()
    assert took < 3.0, f"exited {took:.2f}s after the second SIGINT\n{output}"
    assert "SIGINT received again: ending the grace now" in output, output
    assert "2 jobs were still running after the 30.0s grace: 1 requeued, 1 still running" in output
    assert f"work {async_id} requeued (pool stopping)" in output, output
    assert [m.decode() for m in await redis.zrange(keys.queue("work"), 0, -1)] == [async_id]


@pytest.mark.parametrize("left", [True, False], ids=["job-left-in-a-thread", "nothing-left"])
async def test_a_failed_on_shutdown_hook_is_a_failed_exit_naming_the_hook(
    procs: Procs, redis_url: str, namespace: str, redis: Redis, left: bool
) -> None:
    """The exit that leaves a plain-def job in its thread (os._exit) said 0 when an
    on_shutdown hook had raised: a process manager saw a clean stop."""
    name = "sync_work" if left else "work"
    job_id = await enqueue(redis_url, namespace, name, 30 if left else 0.01)
    env = {"TEST_SHUTDOWN_FAILS": "1"}
    proc = procs.worker("threads:pool", redis_url, namespace, env=env)
    await started(redis, namespace, job_id)
    if not left:
        await eventually(lambda: _len_is(records(redis, namespace, "intervals"), 1), 10, "done")
    proc.send(signal.SIGTERM)
    code = await proc.wait(timeout=20)
    output = proc.output()
    assert code == 1, output
    assert "shutdown hook <function close_ledger" in output, output
    assert "RuntimeError: the ledger would not close" in output, output
    assert ("exiting without waiting for 1 plain def handler" in output) is left, output
    assert ("exiting with status 1" in output) is left, output


async def test_embedded_stop_waits_for_the_thread_and_the_job_never_runs_twice(
    procs: Procs, redis_url: str, namespace: str, redis: Redis
) -> None:
    """Issue 12 defect 5: the embedded pool kept the thread but stopped heartbeating; another
    pool reaped the job and ran it while the thread still ran, and the log said "requeued"."""
    keys = Keys(namespace)
    job_id = await enqueue(redis_url, namespace, "sync_work", 7)
    embedded = procs.start(["-m", "tests.support.apps.embedded_stop", redis_url, namespace, "wait"])
    await started(redis, namespace, job_id)
    other = procs.worker("threads:pool", redis_url, namespace)  # would reap a silent pool
    assert await embedded.wait(timeout=30) == 0, embedded.output()
    output = embedded.output()
    assert "1 job was still running after the 0.5s grace: 0 requeued, 1 still running" in output
    assert "waiting for 1 plain def handler(s) to return" in output, output
    assert f"sync_work {job_id} done in" in output, output
    assert "stopped after 1 job\n" in output, output
    assert "requeued (pool stopping)" not in output, output
    intervals = await records(redis, namespace, "intervals")
    assert [r["id"] for r in intervals] == [job_id], intervals
    assert (await redis.get(keys.done(job_id))) is not None  # finished, result kept
    await asyncio.sleep(1.5)  # a dead timeout and more: nothing left for the other pool
    assert len(await records(redis, namespace, "starts")) == 1
    other.send(signal.SIGTERM)
    assert await other.wait(timeout=10) == 0, other.output()


async def test_cancelled_embedded_stop_keeps_heartbeating_until_the_thread_returns(
    procs: Procs, redis_url: str, namespace: str, redis: Redis
) -> None:
    job_id = await enqueue(redis_url, namespace, "sync_work", 4)
    embedded = procs.start(
        ["-m", "tests.support.apps.embedded_stop", redis_url, namespace, "cancel"]
    )
    await started(redis, namespace, job_id)
    ran: list[tuple[str, float]] = []
    async with recovering_pool(redis_url, namespace, ran):
        await eventually(lambda: _true("stop() timed out" in embedded.output()), 10, "timeout")
        await eventually(lambda: _true(ran), 15, "the job to be recovered after its thread")
    output = embedded.output()
    assert "stop() cancelled; heartbeating until its threads return" in output, output
    assert "returned after this pool stopped waiting for it; not recorded" in output, output
    assert "done in" not in output, output
    [first] = await records(redis, namespace, "intervals")
    [(again, at)] = ran
    # at-least-once: it runs again, but only after the thread of the first run has returned
    assert again == job_id
    assert at >= first["end"], (first, at)


async def _true(value: object) -> bool:
    return bool(value)


async def test_ctrl_c_to_the_process_group_of_processes_n_is_one_graceful_stop(
    procs: Procs, redis_url: str, namespace: str, redis: Redis
) -> None:
    """A terminal's Ctrl-C sends SIGINT to the whole foreground process group: each child of
    ``--processes N`` got it from the terminal and again from the parent, and cancelled its
    running jobs at once. Now each child sees one signal: its jobs finish within the grace."""
    ids = [await enqueue(redis_url, namespace, "work", 2.0) for _ in range(2)]
    proc = procs.worker(
        "threads:pool", redis_url, namespace, "--processes", "2", env={"TEST_GRACE": "20"}
    )
    await started(redis, namespace, *ids)
    await eventually(lambda: _len_is(live_pools(redis, namespace), 2), 15, "both children")
    children = {r["pid"] for r in await records(redis, namespace, "starts")}
    # the terminal's signal cannot reach a child directly (with two signals, a race decides
    # whether the kernel merges them, so check the cause too)
    assert all(os.getpgid(pid) != os.getpgid(proc.pid) for pid in children)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal does
    assert await proc.wait(timeout=20) == 0, proc.output()
    output = proc.output()
    assert "received again" not in output, output
    assert "requeued" not in output, output
    assert sorted(r["id"] for r in await records(redis, namespace, "intervals")) == sorted(ids)


async def _len_is(items: Awaitable[list[str]], n: int) -> bool:
    return len(await items) == n
