"""An iterable job's progress (its last checkpoint: items done, cursor, run time) in
``Client.job``, ``errands inspect job`` and the dashboard's job page, and its checkpoint events."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from errands import Client, Enqueuer, Job, WorkerPool
from tests.support.invariants import assert_invariants
from tests.support.procs import eventually

ROOT = Path(__file__).resolve().parents[2]


async def cli(redis_url: str, namespace: str, *args: str) -> str:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    env.pop("ERRANDS_REDIS_URL", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "errands",
        *args,
        "--redis",
        redis_url,
        "--namespace",
        namespace,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    async with asyncio.timeout(30):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_progress_of_a_running_iterable_job(
    redis_url: str, namespace: str, redis: Redis
) -> None:
    pool = WorkerPool.from_url(redis_url, namespace=namespace, shutdown_grace=0.2)
    release = asyncio.Event()

    @pool.iterable_job("export", checkpoint_every=0)
    async def export(job: Job, cursor: str | None) -> AsyncIterator[str]:
        for i in range(1, 6):
            yield f"row-{i}"
        await release.wait()

    async with (
        Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer,
        Client.from_url(redis_url, namespace=namespace) as client,
        pool,
    ):
        job = await enqueuer.enqueue("export")
        assert job is not None

        async def five_done() -> bool:
            info = await client.job(job.id)
            return info is not None and (info.progress or {}).get("done") == 5

        await eventually(five_done, 10, "5 items checkpointed")
        info = await client.job(job.id)
        assert info is not None and info.progress is not None
        assert info.status == "in_progress"
        assert info.progress["cursor"] == "row-5"
        assert info.progress["runtime"] >= 0 and info.progress["at"] > 0

        text = await cli(redis_url, namespace, "inspect", "job", job.id)
        assert "5 items done, cursor row-5, ran " in text, text
        data = orjson.loads(await cli(redis_url, namespace, "inspect", "job", job.id, "--json"))
        assert data["progress"]["done"] == 5

        pytest.importorskip("starlette", reason="the dashboard needs the 'dashboard' extra")
        import errands
        from tests.support.dashboard import http

        async with http(errands.dashboard(client)) as web:
            page = await web.get(f"/jobs/{job.id}")
        assert page.status_code == 200
        assert 'id="progress">5 items done' in page.text
        assert "row-5" in page.text
        release.set()
        assert await job.result(timeout=10) == {"done": 5, "cursor": "row-5"}
    await assert_invariants(redis, namespace, drained=True, stopped=True)


async def test_each_checkpoint_is_a_checkpoint_event(
    redis_url: str, namespace: str, redis: Redis
) -> None:
    # docs/long-jobs.md: "each checkpoint is a `checkpoint` event for client.events() listeners"
    pool = WorkerPool.from_url(redis_url, namespace=namespace)

    @pool.iterable_job("export", checkpoint_every=0)
    async def export(job: Job, cursor: int | None) -> AsyncIterator[int]:
        for i in range((cursor or 0) + 1, 4):
            yield i

    seen: list[dict[str, Any]] = []
    async with (
        Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer,
        Client.from_url(redis_url, namespace=namespace) as client,
        client.events() as stream,
        pool,
    ):
        job = await enqueuer.enqueue("export")
        assert job is not None
        async with asyncio.timeout(10):
            async for event in stream:
                if event["id"] == job.id and event["event"] == "checkpoint":
                    seen.append(event)
                if event["id"] == job.id and event["event"] == "finished":
                    break
        await pool.drain(timeout=10)
    assert [e["checkpoint"]["cursor"] for e in seen] == [1, 2, 3]
    assert [e["checkpoint"]["done"] for e in seen] == [1, 2, 3]
    assert {e["name"] for e in seen} == {"export"}
    await assert_invariants(redis, namespace, drained=True, stopped=True)
