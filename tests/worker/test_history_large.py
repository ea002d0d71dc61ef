"""Issue 16: the attempt history does not copy a large job's args into every entry (a 20 MB job
was copied into the history of each attempt, kept 15 days): above ``HISTORY_ARGS_MAX`` the
entry holds ``{"_omitted": true, "bytes": N}``; the result record keeps the args."""

from __future__ import annotations

from redis.asyncio import Redis

from errands import Client, Enqueuer, FixedBackoff, Job, WorkerPool
from errands.store.keys import Keys
from errands.worker.settler import HISTORY_ARGS_MAX
from tests.support.invariants import assert_invariants


async def test_history_omits_the_args_of_large_jobs(redis: Redis, namespace: str) -> None:
    keys = Keys(namespace)
    pool = WorkerPool(redis, namespace=namespace, concurrency=2)
    failed_once: set[str] = set()

    @pool.job("blob", max_fails=3, backoff=FixedBackoff(0))
    async def blob(job: Job, data: str) -> int:
        if job.id not in failed_once:  # one failed attempt, then success
            failed_once.add(job.id)
            raise RuntimeError("first attempt fails")
        return len(data)

    enqueuer = Enqueuer(redis, namespace=namespace)
    big_data, small_data = "x" * (HISTORY_ARGS_MAX + 1000), "y" * 100
    big = await enqueuer.enqueue("blob", {"data": big_data})
    small = await enqueuer.enqueue("blob", {"data": small_data})
    assert big is not None and small is not None
    async with pool:
        assert await big.result(timeout=10) == len(big_data)
        assert await small.result(timeout=10) == len(small_data)
        await pool.drain(timeout=5)
    client = Client(redis, namespace=namespace)
    entries = await client.history_job(big.id)
    assert [e.status for e in entries] == ["failed", "finished"]
    for entry in entries:
        assert entry.args["_omitted"] is True and entry.args["bytes"] > HISTORY_ARGS_MAX
    sizes = [len(v) for v in (await redis.hgetall(keys.history_data)).values()]
    assert max(sizes) < 2000  # no entry holds the 17 KB of args
    info = await client.job(big.id)
    assert info is not None and info.args == {"data": big_data}  # the result record keeps them
    assert [e.args for e in await client.history_job(small.id)] == [{"data": small_data}] * 2
    await assert_invariants(redis, namespace, drained=True)
