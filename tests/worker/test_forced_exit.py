"""Signals to a worker process (``errands worker``, ``pool.run()``), as Sidekiq and Celery
users expect them: the first stops gracefully, the second ends the grace (running async jobs
are requeued, plain-def ones left to other pools: tests/worker/test_thread_stop.py), and the
third exits at once with status 128 + its number, whatever the stop is doing (here an
on_shutdown hook blocks the event loop): what runs then is left as after a kill, and other
pools' reapers give it back."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import orjson
import pytest
from redis.asyncio import Redis

from errands import Job
from errands.store.keys import Keys
from tests.support.procs import Procs, eventually, live_pools

from .test_thread_stop import _true, enqueue, recovering_pool, started


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    with Procs(tmp_path) as p:
        yield p


async def test_a_third_signal_exits_at_once_and_the_jobs_left_are_recovered(
    procs: Procs, redis_url: str, namespace: str, redis: Redis
) -> None:
    keys = Keys(namespace)
    sync_id = await enqueue(redis_url, namespace, "sync_work", 30)
    async_id = await enqueue(redis_url, namespace, "work", 30)
    env = {"TEST_GRACE": "30", "TEST_SHUTDOWN_HANGS": "1"}
    proc = procs.worker("threads:pool", redis_url, namespace, env=env)
    await started(redis, namespace, sync_id, async_id)
    [doomed] = await live_pools(redis, namespace)
    proc.send(signal.SIGTERM)
    await eventually(lambda: _true("received: stopping" in proc.output()), 5, "the first line")
    proc.send(signal.SIGTERM)
    await eventually(lambda: _true("flush_ledger: blocking" in proc.output()), 10, "the hook")
    began = time.monotonic()
    proc.send(signal.SIGINT)  # the event loop is blocked: nothing waits for it
    assert await proc.wait(timeout=10) == 128 + signal.SIGINT, proc.output()
    took = time.monotonic() - began
    exited = time.time()
    output = proc.output()
    assert took < 2.0, f"exited {took:.2f}s after the third signal\n{output}"
    assert "a third signal exits at once" in output, output
    assert "SIGINT received a third time: exiting at once (status 130)" in output, output
    # the second signal ended the grace: the async job was requeued, the plain def one left
    assert [m.decode() for m in await redis.zrange(keys.queue("work"), 0, -1)] == [async_id]
    held = await redis.zrange(keys.in_progress(doomed), 0, -1)
    assert held == [f"{sync_id}:sync_work".encode()]
    ran: list[tuple[str, float]] = []
    async with recovering_pool(redis_url, namespace, ran):
        await eventually(lambda: _true(ran), 10, "the job left to be recovered")
    [(again, at)] = ran
    assert again == sync_id and at > exited
    assert await redis.hget(keys.stats, "failed") is None


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_three_signals_exit_while_a_handler_blocks_the_event_loop(
    procs: Procs, redis_url: str, namespace: str, redis: Redis, log_format: str
) -> None:
    """An async handler that blocks the loop (time.sleep) kept every signal from being
    handled: no stop, no end of the grace, no exit, however many Ctrl-C. (The exit's line in
    the log format: ``_said_last``.)"""
    keys = Keys(namespace)
    job_id = await enqueue(redis_url, namespace, "blocking", 60)
    extra = ("--log-format", log_format)
    proc = procs.worker("threads:pool", redis_url, namespace, *extra, env={"TEST_GRACE": "30"})
    await started(redis, namespace, job_id)
    [doomed] = await live_pools(redis, namespace)
    began = time.monotonic()
    for sig in (signal.SIGTERM, signal.SIGTERM, signal.SIGTERM):
        proc.send(sig)
        await asyncio.sleep(0.1)  # (three signals, not one: the kernel merges those still pending)
    assert await proc.wait(timeout=10) == 128 + signal.SIGTERM, proc.output()
    took = time.monotonic() - began
    exited = time.time()
    output = proc.output()
    assert took < 2.0, f"exited {took:.2f}s after the first signal\n{output}"
    _said_last(output, log_format)
    held = await redis.zrange(keys.in_progress(doomed), 0, -1)
    assert held == [f"{job_id}:blocking".encode()]
    ran: list[tuple[str, float]] = []
    other = recovering_pool(redis_url, namespace, ran)

    @other.job("blocking")
    def again(job: Job, seconds: float) -> None:
        ran.append((job.id, time.time()))

    async with other:
        await eventually(lambda: _true(ran), 10, "the job left to be recovered")
    [(again_id, at)] = ran
    assert again_id == job_id and at > exited


def _said_last(output: str, log_format: str) -> None:
    """The third signal's line is the last one, in the log format of the others: under
    ``--log-format json`` a JSON log line with their fields (it was plain text among them)."""
    said = "SIGTERM received a third time: exiting at once (status 143)"
    lines = [line for line in output.splitlines() if line and not line.startswith("warm_cache")]
    assert said in lines[-1], output
    if log_format == "json":
        entries = [orjson.loads(line) for line in lines]  # (every line: JSON)
        last, others = entries[-1], entries[:-1]
        assert others, output
        assert all(set(entry) == set(last) for entry in others), output
        assert last["level"] == "WARNING" and last["logger"] == "errands.runner"
        assert last["message"].startswith(said)
        assert datetime.fromisoformat(last["time"]).tzinfo is not None


async def test_three_signals_exit_while_a_startup_hook_blocks_the_event_loop(
    procs: Procs, redis_url: str, namespace: str
) -> None:
    """An async startup hook that blocks the loop (time.sleep): the start cannot be cancelled
    (nor is the first signal's line written: the loop never runs again), the third signal
    exits all the same."""
    env = {"TEST_GRACE": "30", "TEST_STARTUP_BLOCKS": "1"}
    proc = procs.worker("threads:pool", redis_url, namespace, env=env)
    await eventually(lambda: _true("warm_cache: blocking" in proc.output()), 15, "the hook")
    began = time.monotonic()
    for sig in (signal.SIGTERM, signal.SIGTERM, signal.SIGTERM):
        proc.send(sig)
        await asyncio.sleep(0.1)  # (three signals, not one: the kernel merges those still pending)
    assert await proc.wait(timeout=10) == 128 + signal.SIGTERM, proc.output()
    took = time.monotonic() - began
    output = proc.output()
    assert took < 2.0, f"exited {took:.2f}s after the first signal\n{output}"
    _said_last(output, "text")
