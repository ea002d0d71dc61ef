"""``errands destroy <id> [--wait S]``: Client.destroy from the command line (a waiting job
goes at once; a running one is dropped by its pool, which ``--wait`` waits for)."""

from __future__ import annotations

import asyncio
import time

from errands import Job
from tests.cli.test_admin import Cli, cli, env, one_clear_line
from tests.support.client_env import Env, until

__all__ = ["cli", "env"]  # (the fixtures, used here by name)


async def test_destroy_a_waiting_job_then_an_unknown_one(env: Env, cli: Cli) -> None:
    job = await env.enqueuer.enqueue("later", {}, delay=60)
    assert job is not None
    r = await cli("destroy", job.id)
    assert (r.code, r.out.strip()) == (0, f"destroyed {job.id}"), r
    assert await env.client.job(job.id) is None
    one_clear_line(await cli("destroy", job.id), f"no job {job.id!r}")


async def test_destroy_a_running_job_waits_for_its_pool_to_drop_it(env: Env, cli: Cli) -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    @env.pool.job("slow")
    async def slow(job: Job) -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    job = await env.enqueuer.enqueue("slow", {})
    assert job is not None
    await env.pool.start()
    await asyncio.wait_for(started.wait(), 10)
    r = await cli("destroy", job.id, "--wait", "20", "--json")
    assert r.json() == {"id": job.id, "destroyed": True}
    assert cancelled.is_set()  # dropped by its pool before the command returned
    assert await env.client.job(job.id) is None


async def test_destroy_wait_that_runs_out_says_so(env: Env, cli: Cli) -> None:
    """A plain def handler's thread runs to its end: ``--wait`` shorter than that fails with
    one clear line (the job is destroyed all the same, once it ends)."""
    started = asyncio.Event()
    loop = asyncio.get_running_loop()

    @env.pool.job("blocking")
    def blocking(job: Job) -> None:
        loop.call_soon_threadsafe(started.set)
        time.sleep(3)

    job = await env.enqueuer.enqueue("blocking", {})
    assert job is not None
    await env.pool.start()
    await asyncio.wait_for(started.wait(), 10)
    r = await cli("destroy", job.id, "--wait", "0.2")
    one_clear_line(r, f"job {job.id} was not dropped by its pool within 0.2s")
    await until(lambda: _gone(env, job.id), timeout=15)  # (dropped once its thread ended)


async def _gone(env: Env, job_id: str) -> bool:
    return await env.client.job(job_id) is None
