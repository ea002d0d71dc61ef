"""examples/outbox_app runs: its FastAPI app writes users and their jobs in one transaction,
its worker (started the documented way, ``python -m worker``) relays and runs them."""

from __future__ import annotations

import importlib
import signal
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from errands import Client, JobStatus
from errands.store.keys import Keys
from tests.support.procs import eventually, live_pools
from tests.test_examples_web import EXAMPLES, ExampleWorker, example_modules

pytest.importorskip("fastapi")
pytest.importorskip("sqlalchemy")
pytest.importorskip("aiosqlite")


async def test_outbox_example(redis_url: str, namespace: str, redis: Redis, tmp_path: Path) -> None:
    env = {
        "REDIS_URL": redis_url,
        "ERRANDS_NAMESPACE": namespace,
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'app.db'}",
    }
    directory = EXAMPLES / "outbox_app"
    worker = ExampleWorker(directory, env, tmp_path / "worker.log")
    try:
        await eventually(lambda: live_pools(redis, namespace), 20, "the example worker")
        with example_modules(directory), pytest.MonkeyPatch.context() as mp:
            for key, value in env.items():
                mp.setenv(key, value)
            app = importlib.import_module("app").app
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                    ok = await http.post("/signup", params={"email": "ada@example.com"})
                    assert ok.status_code == 200, ok.text
                    bad = await http.post("/signup", params={"email": "nobody"})
                    assert bad.status_code == 400
            await importlib.import_module("jobs").engine.dispose()
        job_id = ok.json()["job_id"]
        async with Client.from_url(redis_url, namespace=namespace) as client:

            async def finished() -> bool:
                info = await client.job(job_id)
                return info is not None and info.status == JobStatus.FINISHED

            await eventually(finished, 20, "the welcome job")
        assert await redis.hlen(Keys(namespace).jobs) <= 1  # the rolled-back signup made none
        worker.send(signal.SIGTERM)
        assert await worker.wait(20) == 0, worker.output()
        assert "welcome mail to ada@example.com" in worker.output()
        assert worker.output().count("welcome mail to") == 1
        assert "nobody" not in worker.output()
    finally:
        worker.kill_group()
