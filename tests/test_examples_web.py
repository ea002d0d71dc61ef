"""The web framework examples run: examples/fastapi_app (httpx ASGI transport, lifespan),
examples/aiohttp_app (aiohttp test client, cleanup_ctx), examples/flask_app (Flask's test
client) and examples/django_app (Django's test client), each with its real worker process
started the documented way, ``python -m worker`` from the example's directory."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from errands import Client
from tests.support.procs import Proc, eventually, live_pools, subprocess_env

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
MODULES = ("app", "jobs", "worker", "project")


@contextlib.contextmanager
def example_modules(directory: Path) -> Iterator[None]:
    """Import the example's top-level modules (app, jobs) from ``directory``, then forget them:
    both examples use the same module names."""

    def ours(name: str) -> bool:
        return name.partition(".")[0] in MODULES

    saved = {name: sys.modules.pop(name) for name in list(sys.modules) if ours(name)}
    sys.path.insert(0, str(directory))
    try:
        yield
    finally:
        sys.path.remove(str(directory))
        for name in [name for name in sys.modules if ours(name)]:
            sys.modules.pop(name, None)
        sys.modules.update(saved)


@contextlib.asynccontextmanager
async def example(
    name: str,
    redis_url: str,
    namespace: str,
    redis: Redis,
    tmp_path: Path,
    module: str = "app",
    env: dict[str, str] | None = None,
) -> AsyncIterator[ModuleType]:
    """The example's ``module`` (``app``), with its worker running as ``python -m worker``."""
    directory = EXAMPLES / name
    env = {"REDIS_URL": redis_url, "ERRANDS_NAMESPACE": namespace, **(env or {})}
    worker = ExampleWorker(directory, env, tmp_path / "worker.log")
    try:
        await eventually(lambda: live_pools(redis, namespace), 20, "the example worker")
        with example_modules(directory), pytest.MonkeyPatch.context() as mp:
            for key, value in env.items():
                mp.setenv(key, value)
            yield importlib.import_module(module)
        worker.send(signal.SIGTERM)
        assert await worker.wait(20) == 0, worker.output()
        assert "mail 1 to ada@example.com: Welcome!" in worker.output()
    finally:
        worker.kill_group()


class ExampleWorker(Proc):
    """``python -m worker`` in the example's directory (a Proc runs in the repository root)."""

    def __init__(self, directory: Path, env: dict[str, str], log: Path) -> None:
        self.args = [sys.executable, "-m", "worker"]
        self.log = log
        self._out = log.open("wb")
        self.popen = subprocess.Popen(
            self.args,
            cwd=directory,
            env=subprocess_env(env),
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


async def _finished(client: Client, job_id: str) -> Any:
    info = await client.job(job_id)
    return info is not None and info.status == "finished"


async def test_fastapi_example(
    redis_url: str, namespace: str, redis: Redis, tmp_path: Path
) -> None:
    pytest.importorskip("fastapi")
    async with example("fastapi_app", redis_url, namespace, redis, tmp_path) as module:
        app = module.app
        gc.unfreeze()
        try:
            async with app.router.lifespan_context(app):
                # the lifespan froze what startup built (the tail-latency advice it shows)
                assert gc.get_freeze_count() > 0
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
                    response = await http.post("/signup", params={"address": "ada@example.com"})
                    assert response.status_code == 200, response.text
                    job_id = response.json()["job_id"]
                    response = await http.get("/word-count", params={"text": "one two three"})
                    assert response.status_code == 200, response.text
                    assert response.json() == {"words": 3}
        finally:
            gc.unfreeze()  # the test process's objects are collectable again
        async with Client.from_url(redis_url, namespace=namespace) as client:
            await eventually(lambda: _finished(client, job_id), 10, "the welcome email")


async def test_aiohttp_example(
    redis_url: str, namespace: str, redis: Redis, tmp_path: Path
) -> None:
    pytest.importorskip("aiohttp")
    from aiohttp.test_utils import TestClient, TestServer

    async with example("aiohttp_app", redis_url, namespace, redis, tmp_path) as module:
        async with TestClient(TestServer(module.create_app())) as http:
            response = await http.post("/signup", params={"address": "ada@example.com"})
            assert response.status == 200, await response.text()
            job_id = (await response.json())["job_id"]
            response = await http.get("/word-count", params={"text": "a b c d"})
            assert response.status == 200, await response.text()
            assert await response.json() == {"words": 4}
            response = await http.post("/signup")
            assert response.status == 400
        async with Client.from_url(redis_url, namespace=namespace) as client:
            await eventually(lambda: _finished(client, job_id), 10, "the welcome email")


async def test_flask_example(redis_url: str, namespace: str, redis: Redis, tmp_path: Path) -> None:
    pytest.importorskip("flask")
    async with example("flask_app", redis_url, namespace, redis, tmp_path) as module:
        http = module.app.test_client()
        try:
            # the views block: run them in a thread, as a WSGI server does
            response = await asyncio.to_thread(
                http.post, "/signup", query_string={"address": "ada@example.com"}
            )
            assert response.status_code == 200, response.text
            job_id = response.json["job_id"]
            response = await asyncio.to_thread(
                http.get, "/word-count", query_string={"text": "one two"}
            )
            assert response.status_code == 200, response.text
            assert response.json == {"words": 2}
            response = await asyncio.to_thread(http.post, "/signup")
            assert response.status_code == 400
        finally:
            module.enqueuer.close()
        async with Client.from_url(redis_url, namespace=namespace) as client:
            await eventually(lambda: _finished(client, job_id), 10, "the welcome email")


async def test_django_example(redis_url: str, namespace: str, redis: Redis, tmp_path: Path) -> None:
    pytest.importorskip("django")
    settings = {"DJANGO_SETTINGS_MODULE": "project.settings"}
    async with example(
        "django_app", redis_url, namespace, redis, tmp_path, "project.views", settings
    ) as views:
        import django
        from django.test import Client as DjangoClient

        django.setup()
        http = DjangoClient()
        try:
            response = await asyncio.to_thread(http.post, "/signup?address=ada@example.com")
            assert response.status_code == 200, response.content
            job_id = response.json()["job_id"]
            response = await asyncio.to_thread(http.get, "/word-count", {"text": "a b c"})
            assert response.status_code == 200, response.content
            assert response.json() == {"words": 3}
            response = await asyncio.to_thread(http.get, "/signup")
            assert response.status_code == 405
        finally:
            views.enqueuer.close()
        async with Client.from_url(redis_url, namespace=namespace) as client:
            await eventually(lambda: _finished(client, job_id), 10, "the welcome email")
