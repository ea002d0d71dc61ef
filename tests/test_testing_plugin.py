"""errands.testing, the opt-in pytest plugin for users: run as a user would, in a subprocess
pytest (examples/testing, and a project without the errands_pool option); and pool.drain()'s
timeout, as docs/testing.md describes them."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from errands import Enqueuer, Job, WorkerPool

ROOT = Path(__file__).resolve().parent.parent

OWN_POOL_TESTS = """
import asyncio

from errands import WorkerPool
from errands.testing import ErrandsHarness

app_pool = WorkerPool.from_url("redis://127.0.0.1:9/0", namespace="app")


@app_pool.job("ping")
async def ping(n: int) -> int:
    return n


async def test_register_on_the_fresh_pool(errands: ErrandsHarness) -> None:
    ran = []

    @errands.pool.job("hello")
    async def hello(name: str) -> None:
        ran.append(name)

    await hello.enqueue("ada")
    await errands.enqueue("hello", {"name": "bob"}, delay=30)
    await errands.run_until_idle()
    assert ran == ["ada"]
    errands.clock.advance(30)
    await errands.run_until_idle()
    assert ran == ["ada", "bob"]


async def test_use_points_the_app_pool_at_the_test_redis(errands: ErrandsHarness) -> None:
    pool = errands.use(app_pool)
    assert pool.namespace == errands.namespace and pool.url == errands.url
    job = await ping.enqueue(7)
    await errands.run_until_idle()
    assert job is not None and await job.result(timeout=1) == 7


def test_the_app_pool_is_restored_afterwards() -> None:
    assert app_pool.namespace == "app" and app_pool.url == "redis://127.0.0.1:9/0"
    assert app_pool.bound_enqueuer is None


async def test_namespaces_are_fresh_per_test(errands: ErrandsHarness) -> None:
    assert await errands.client.queue_sizes() == {}
"""


PRIVATE_SERVER_TESTS = """
import re
from pathlib import Path

from errands import Job
from errands.testing import ErrandsHarness

seen: list[tuple[str, str]] = []


async def run_one(harness: ErrandsHarness, url: str) -> None:
    ran = []

    @harness.pool.job("hello")
    async def hello(job: Job, name: str) -> None:
        ran.append(name)

    await harness.enqueue("hello", {"name": "ada"})
    await harness.run_until_idle()
    assert ran == ["ada"]
    assert re.fullmatch(r"test-[0-9a-f]{12}", harness.namespace), harness.namespace
    seen.append((url, harness.namespace))


async def test_first(errands_redis_url: str, errands_harness: ErrandsHarness) -> None:
    await run_one(errands_harness, errands_redis_url)


async def test_second(errands_redis_url: str, errands_harness: ErrandsHarness) -> None:
    await run_one(errands_harness, errands_redis_url)
    (url, first), (same_url, second) = seen
    assert same_url == url and second != first  # one server for the session, fresh namespaces
    Path("url.txt").write_text(url)
"""


def run_pytest(cwd: Path, redis_url: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = _env()
    if redis_url is not None:
        env["ERRANDS_TEST_REDIS_URL"] = redis_url
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _env() -> dict[str, str]:
    import os

    env = dict(os.environ)
    env.pop("PYTEST_ADDOPTS", None)
    env.pop("REDIS_URL", None)
    env.pop("ERRANDS_TEST_REDIS_URL", None)
    return env


def test_the_documented_example_passes(redis_url: str) -> None:
    proc = run_pytest(ROOT / "examples" / "testing", redis_url)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "4 passed" in proc.stdout
    # the documented pytest.ini sets what pytest-asyncio asks for (issue 16)
    assert "Warning" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    documented = (ROOT / "docs" / "testing.md").read_text()
    for line in (ROOT / "examples" / "testing" / "pytest.ini").read_text().splitlines():
        if line and not line.startswith("#") and "errands_pool" not in line:
            assert line in documented, line


def test_fresh_pool_use_and_restore_with_dash_p(redis_url: str, tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\nasyncio_mode = auto\n")
    (tmp_path / "test_own.py").write_text(textwrap.dedent(OWN_POOL_TESTS))
    proc = run_pytest(tmp_path, redis_url, "-p", "errands.testing")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "4 passed" in proc.stdout


def test_not_loaded_unless_asked(redis_url: str, tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\nasyncio_mode = auto\n")
    (tmp_path / "test_own.py").write_text(textwrap.dedent(OWN_POOL_TESTS))
    proc = run_pytest(tmp_path, redis_url)
    assert proc.returncode != 0
    assert "fixture 'errands' not found" in proc.stdout


def test_without_the_variable_a_private_server_serves_the_session(
    redis_url: str, tmp_path: Path
) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\nasyncio_mode = auto\n")
    (tmp_path / "test_own.py").write_text(textwrap.dedent(PRIVATE_SERVER_TESTS))
    proc = run_pytest(tmp_path, None, "-p", "errands.testing")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 passed" in proc.stdout
    url = (tmp_path / "url.txt").read_text()
    assert url != redis_url
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    with pytest.raises(OSError), socket.create_connection((parts.hostname, parts.port), 1):
        pass  # the session's server is gone with the session


@pytest.mark.parametrize("kind", ["never_finishes", "keeps_enqueueing"])
async def test_drain_raises_timeout_error_after_its_timeout(
    redis_url: str, namespace: str, kind: str
) -> None:
    pool = WorkerPool.from_url(redis_url, namespace=namespace, shutdown_grace=0.1)
    never = asyncio.Event()
    runs: list[int] = []

    @pool.job("stuck")
    async def stuck(job: Job) -> None:
        runs.append(1)
        await never.wait()

    @pool.job("again")
    async def again(job: Job) -> None:
        runs.append(1)
        await enqueuer.enqueue("again")

    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        await enqueuer.enqueue("stuck" if kind == "never_finishes" else "again")
        started = asyncio.get_running_loop().time()
        with pytest.raises(TimeoutError):
            await pool.drain(timeout=0.5)
        assert 0.5 <= asyncio.get_running_loop().time() - started < 3
    assert runs and not pool.started  # drain stopped the pool it had started


async def test_drain_times_out_even_when_a_call_swallows_its_cancel(
    redis_url: str, namespace: str
) -> None:
    """A call that swallows the timeout's cancel (as a client library may) left drain looping
    for ever; drain checks the deadline's expiry on each round too."""
    pool = WorkerPool.from_url(redis_url, namespace=namespace, shutdown_grace=0.1)

    @pool.job("stuck")
    async def stuck(job: Job) -> None:
        await asyncio.Event().wait()

    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer, pool:
        await enqueuer.enqueue("stuck")
        assert pool.requeuer is not None
        real = pool.requeuer.promote_once

        async def swallowing() -> tuple[int, int]:
            with contextlib.suppress(asyncio.CancelledError):  # (swallowed)
                await asyncio.sleep(0.1)  # (where the cancel lands, mostly)
            return await real()

        pool.requeuer.promote_once = swallowing  # type: ignore[method-assign]
        started = asyncio.get_running_loop().time()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(pool.drain(timeout=0.3), 10)
        assert asyncio.get_running_loop().time() - started < 3
