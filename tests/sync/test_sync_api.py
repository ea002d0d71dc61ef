"""SyncEnqueuer and SyncClient: blocking calls for sync code, run on a private event loop in a
daemon thread. Thread-safe, one connection pool, the same middleware and serialization as the
async Enqueuer, usable from a thread that runs an event loop, across fork and at exit."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import os
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import redis
from redis.asyncio import Redis

from errands import (
    Job,
    JobFailedError,
    Middleware,
    Next,
    RedisUnavailableError,
    SyncClient,
    SyncEnqueuer,
    WorkerPool,
)
from errands.store.keys import Keys
from tests.support.procs import subprocess_env

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


class Stamp(Middleware):
    """Copies the caller's request id into the job, as a tracing middleware would."""

    async def enqueue(self, job: Job, next: Next) -> Any:
        job.meta["request_id"] = request_id.get()
        job.meta["thread"] = threading.current_thread().name
        return await next()


@pytest.fixture
def sync(redis_url: str, namespace: str) -> Iterator[SyncEnqueuer]:
    with SyncEnqueuer.from_url(redis_url, namespace=namespace, middleware=[Stamp()]) as e:
        yield e


async def stored(redis: Redis, namespace: str, job_id: str) -> dict[str, Any]:
    raw = await redis.hget(Keys(namespace).jobs, job_id)
    assert raw is not None, f"job {job_id} not stored"
    envelope: dict[str, Any] = orjson.loads(raw)
    return envelope


async def test_enqueue_from_a_plain_thread_runs_the_middleware_in_the_callers_context(
    sync: SyncEnqueuer, redis: Redis, namespace: str
) -> None:
    def from_a_view() -> Job | None:
        request_id.set("req-42")
        return sync.enqueue("send_email", {"address": "a@example.com"}, priority=5)

    job = await asyncio.to_thread(from_a_view)
    assert job is not None
    envelope = await stored(redis, namespace, job.id)
    assert envelope["a"] == {"address": "a@example.com"} and envelope["p"] == 5
    assert envelope["m"]["request_id"] == "req-42"
    assert envelope["m"]["thread"] == "errands-sync-enqueuer"  # ran on the private loop


async def test_many_threads_at_once_share_one_connection_pool(
    sync: SyncEnqueuer, redis: Redis, namespace: str
) -> None:
    before = (await redis.info("stats"))["total_connections_received"]
    threads, per_thread = 16, 40
    ids: list[str] = []
    lock = threading.Lock()

    def work() -> None:
        for i in range(per_thread):
            job = sync.enqueue("count", {"i": i})
            assert job is not None
            with lock:
                ids.append(job.id)

    def run_all() -> None:
        pool = [threading.Thread(target=work) for _ in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()

    await asyncio.to_thread(run_all)
    assert len(set(ids)) == threads * per_thread
    assert await redis.zcard(Keys(namespace).queue("count")) == threads * per_thread
    opened = (await redis.info("stats"))["total_connections_received"] - before
    assert opened <= threads, f"{opened} connections for {threads} threads"


async def test_enqueue_from_the_thread_of_a_running_event_loop_does_not_deadlock(
    sync: SyncEnqueuer, redis: Redis, namespace: str
) -> None:
    # this test body runs on an event loop: a sync call blocks it, the private loop works
    job = sync.enqueue("from_async_code", {})
    assert job is not None
    assert await stored(redis, namespace, job.id)
    jobs = sync.enqueue_many([("bulk", {"n": 1}), ("bulk", {"n": 2}, {"priority": 3})])
    assert [j.args["n"] for j in jobs] == [1, 2]
    assert sync.enqueue_unique("once", {"k": 1}) is not None
    assert sync.enqueue_unique("once", {"k": 1}) is None


async def test_calling_it_from_its_own_loop_thread_is_refused(
    redis_url: str, namespace: str
) -> None:
    holder: list[SyncEnqueuer] = []

    class Reentrant(Middleware):
        async def enqueue(self, job: Job, next: Next) -> Any:
            if job.name == "outer":
                holder[0].enqueue("inner", {})
            return await next()

    with SyncEnqueuer(redis_url, namespace=namespace, middleware=[Reentrant()]) as e:
        holder.append(e)
        with pytest.raises(RuntimeError, match="its own event loop thread"):
            await asyncio.to_thread(e.enqueue, "outer", {})


async def test_results_and_the_read_side_of_the_client(
    sync: SyncEnqueuer, redis_url: str, namespace: str
) -> None:
    pool = WorkerPool.from_url(redis_url, namespace=namespace)

    @pool.job("add")
    async def add(a: int, b: int) -> int:
        return a + b

    @pool.job("boom", max_fails=1)
    def boom() -> None:
        raise ValueError("no")

    ok = sync.enqueue("add", {"a": 2, "b": 3})
    bad = sync.enqueue("boom")
    assert ok is not None and bad is not None
    with SyncClient.from_url(redis_url, namespace=namespace) as client:
        async with pool:
            assert await asyncio.to_thread(sync.result, ok.id, 10) == 5
            assert await ok.result(timeout=10) == 5  # a Job from a SyncEnqueuer, awaited
            with pytest.raises(JobFailedError, match="no"):
                await asyncio.to_thread(client.result, bad.id, 10)
        info = client.job(ok.id)
        assert info is not None and info.status == "finished" and info.result == 5
        assert {q.name for q in client.queues()} == {"add", "boom"}
        assert client.dead_jobs().total == 1
        assert client.count_by_status()["dead"] == 1
        assert client.history().total == 2
        assert client.run(lambda c: c.cancel(bad.id)) == "dead"


def test_redis_down_raises_redis_unavailable_naming_the_server(namespace: str) -> None:
    with (
        SyncEnqueuer("redis://:secret@127.0.0.1:9/0", namespace=namespace) as e,
        pytest.raises(RedisUnavailableError, match=r"redis://:\*\*\*@127.0.0.1:9/0"),
    ):
        e.enqueue("x", {})


def test_close_then_use_again_and_fork(sync: SyncEnqueuer, redis_url: str) -> None:
    assert sync.enqueue("before_close") is not None
    sync.close()
    assert sync.enqueue("after_close") is not None  # a new loop thread and connections
    read, write = os.pipe()
    with warnings.catch_warnings():  # 3.12+: "this process is multi-threaded" (pytest's)
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: the parent's loop thread does not exist here
        try:
            job = sync.enqueue("in_child")
            os.write(write, b"ok" if job is not None else b"none")
        except BaseException as exc:
            os.write(write, repr(exc).encode()[:200])
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 200) == b"ok"
    assert sync.enqueue("in_parent_after_fork") is not None


SCRIPT = """
import atexit, sys

# registered before errands is imported: runs after errands' own exit handler has closed the
# connections (atexit handlers run last registered first)
atexit.register(lambda: print("late", enqueuer.enqueue("in_atexit") is not None, flush=True))

from errands import SyncEnqueuer

enqueuer = SyncEnqueuer(sys.argv[1], namespace=sys.argv[2], strict=None)
enqueuer.enqueue("at_import")
atexit.register(lambda: print("early", enqueuer.enqueue("early_atexit") is not None, flush=True))
print("main done", flush=True)
"""


def test_interpreter_exit_without_close_is_clean_and_atexit_handlers_can_enqueue(
    redis_url: str, namespace: str
) -> None:
    """No close(): the process exits at once, quietly (warnings are errors here), and an atexit
    handler that runs after errands released its connections still enqueues."""
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-X", "dev", "-c", SCRIPT, redis_url, namespace],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout.split("\n")[:3] == ["main done", "early True", "late True"]

    async def check() -> list[bytes]:
        async with Redis.from_url(redis_url) as r:
            return sorted(await r.smembers(Keys(namespace).names))

    assert asyncio.run(check()) == [b"at_import", b"early_atexit", b"in_atexit"]


def test_close_cancels_another_thread_s_call_in_flight(own_url: str, namespace: str) -> None:
    """close() while another thread's enqueue waits on Redis (CLIENT PAUSE): that caller gets
    CancelledError (it blocked forever: the loop stopped with its task pending)."""
    admin = redis.Redis.from_url(own_url)
    sync = SyncEnqueuer(own_url, namespace=namespace, strict=None)
    assert sync.enqueue("warm") is not None
    outcome: dict[str, BaseException] = {}

    def call() -> None:
        try:
            sync.enqueue("paused", job_id="J1")
        except BaseException as exc:
            outcome["error"] = exc

    admin.execute_command("CLIENT", "PAUSE", "1000", "WRITE")  # (a real wait, bounded)
    try:
        thread = threading.Thread(target=call, daemon=True)
        thread.start()
        deadline = time.monotonic() + 5
        while not getattr(sync._portal, "_calls", 0) and time.monotonic() < deadline:  # started
            time.sleep(0.001)
        sync.close()
        thread.join(timeout=5)
        assert not thread.is_alive()
    finally:
        admin.execute_command("CLIENT", "UNPAUSE")
        admin.close()
    assert isinstance(outcome.get("error"), concurrent.futures.CancelledError)
    assert sync.enqueue("after") is not None  # a new loop
    sync.close()


async def test_cancelling_an_awaited_result_of_a_sync_job_stops_its_wait(
    sync: SyncEnqueuer,
) -> None:
    """``await job.result()`` of a SyncEnqueuer's job, cancelled (a request timed out): the wait
    on the SyncEnqueuer's loop ends too (it ran on, in a thread blocked until the result came
    or its timeout passed: forever, with no timeout and no worker)."""
    job = sync.enqueue("never_run")
    assert job is not None
    waiting = asyncio.create_task(job.result(timeout=8))  # (bounded: the old wait's thread
    # held the test loop's shutdown until it ended)
    deadline = time.monotonic() + 5
    while not sync._portal._calls and time.monotonic() < deadline:  # (its wait started)
        await asyncio.sleep(0.001)
    assert sync._portal._calls
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    deadline = time.monotonic() + 2
    while sync._portal._calls and time.monotonic() < deadline:
        await asyncio.sleep(0.001)
    assert not sync._portal._calls  # the result's wait was cancelled on the portal's loop


async def test_a_sync_job_s_result_awaited_on_the_portal_s_own_loop_works(
    sync: SyncEnqueuer,
) -> None:
    """(a middleware of the SyncEnqueuer's awaiting a job's result runs on its loop)"""
    job = sync.enqueue("never_run")
    assert job is not None

    async def on_its_loop(_e: object) -> None:
        with pytest.raises(TimeoutError):
            await job.result(timeout=0)

    sync._portal.run(on_its_loop)
