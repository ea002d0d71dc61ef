"""pytest fixtures for testing your errands jobs against a real, private Redis.

Opt in (it is never loaded automatically): ``pytest -p errands.testing``, or in your top-level
``conftest.py``::

    pytest_plugins = ["errands.testing"]

Fixtures (async ones need pytest-asyncio):

- ``errands_redis_url`` (session): ``$ERRANDS_TEST_REDIS_URL``, else a private ``redis-server``
  (or bundled ``valkey-server``) started on a free port for the session;
- ``errands_harness``: an ``ErrandsHarness`` with a fresh namespace, a ``FakeClock``,
  an ``enqueuer``, a ``client`` and a ``pool`` (your pool, named by the ``errands_pool`` ini
  option or given to ``use``, pointed at the test Redis), and
  ``await errands_harness.run_until_idle()`` (``errands``, its former name, still works).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar, cast

import pytest

from .admin.client import Client
from .clock import FakeClock
from .enqueuer import Enqueuer
from .job import Job
from .worker.pool import WorkerPool

__all__ = ["ErrandsHarness"]


def _fixture_decorator() -> Any:
    """pytest-asyncio's decorator (works in its strict mode too), else pytest's."""
    try:
        import pytest_asyncio
    except ImportError:  # then the async fixture needs another plugin (anyio...)
        return pytest.fixture
    return pytest_asyncio.fixture


def _async_fixture(fn: F) -> F:
    return cast(F, _fixture_decorator()(fn))


F = TypeVar("F", bound=Callable[..., Any])
_SAVED = ("url", "_redis", "_owns_client", "namespace", "clock", "bound_enqueuer")


class ErrandsHarness:
    """One test's view of errands: its own namespace on the test Redis, a fake clock shared by
    the enqueuer and the pool, and the pool under test."""

    def __init__(self, url: str, namespace: str | None = None, clock: FakeClock | None = None):
        self.url = url
        self.namespace = namespace or "test-" + uuid.uuid4().hex[:12]
        self.clock = clock if clock is not None else FakeClock()
        self._enqueuer: Enqueuer | None = None
        self._client: Client | None = None
        self._pool: WorkerPool | None = None
        self._saved: dict[str, Any] | None = None

    @property
    def enqueuer(self) -> Enqueuer:
        """An Enqueuer on the test Redis and namespace, with the harness's clock."""
        if self._enqueuer is None:
            self._enqueuer = Enqueuer.from_url(self.url, namespace=self.namespace, clock=self.clock)
        return self._enqueuer

    @property
    def client(self) -> Client:
        """A Client for asserting on outcomes (``await errands.client.dead_count()``...)."""
        if self._client is None:
            self._client = Client.from_url(self.url, namespace=self.namespace, clock=self.clock)
        return self._client

    @property
    def pool(self) -> WorkerPool:
        """The pool under test: the one given to ``use``, else a new empty pool on the
        test Redis to register handlers on."""
        if self._pool is None:
            self._pool = WorkerPool.from_url(self.url, namespace=self.namespace, clock=self.clock)
            self._pool.bind_enqueuer(self.enqueuer)
        return self._pool

    def use(self, pool: WorkerPool) -> WorkerPool:
        """Point your app's pool at the test Redis, namespace and clock for this test, and bind
        the harness's Enqueuer to it (so ``my_job.enqueue(...)`` lands here). Undone after."""
        if self._pool is pool:
            return pool
        if self._pool is not None:
            raise RuntimeError("this test already has a pool")
        self._saved = {name: getattr(pool, name) for name in _SAVED}
        pool.url, pool._redis, pool._owns_client = self.url, None, True
        pool.namespace, pool.clock, pool.bound_enqueuer = self.namespace, self.clock, None
        pool.bind_enqueuer(self.enqueuer)
        self._pool = pool
        return pool

    async def enqueue(self, name: str, args: dict[str, Any] | None = None, **options: Any) -> Job:
        """``enqueuer.enqueue`` that fails the test when a middleware dropped the job."""
        job = await self.enqueuer.enqueue(name, args, **options)
        assert job is not None, f"job {name!r} was dropped by an enqueue middleware"
        return job

    async def run_until_idle(self, timeout: float = 10.0) -> None:
        """Run the pool until nothing is left to do now (``pool.drain``): due scheduled jobs and
        retries run too; ones due later wait for ``errands.clock.advance(...)``."""
        await self.pool.drain(timeout=timeout)

    async def aclose(self) -> None:
        pool = self._pool
        if pool is not None:
            await pool.stop()
            if pool._owns_client and pool._redis is not None:
                await pool._redis.aclose()
            if self._saved is not None:
                for name, value in self._saved.items():
                    setattr(pool, name, value)
        for owned in (self._enqueuer, self._client):
            if owned is not None:
                await owned.aclose()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "errands_pool",
        "MODULE:ATTRIBUTE of the WorkerPool the errands fixture tests (e.g. myapp.jobs:pool)",
        default="",
    )


@pytest.fixture(scope="session")
def errands_redis_url() -> Iterator[str]:
    """``$ERRANDS_TEST_REDIS_URL`` when set (tests use fresh namespaces and flush nothing),
    else a private Redis server for the test session."""
    url = os.environ.get("ERRANDS_TEST_REDIS_URL")
    if url:
        yield url
        return
    from .store.devserver import RedisServer

    with RedisServer() as server:
        yield server.url


@_async_fixture
async def errands_harness(
    errands_redis_url: str, request: pytest.FixtureRequest
) -> AsyncIterator[ErrandsHarness]:
    """An ``ErrandsHarness`` for this test (see the module docs)."""
    harness = ErrandsHarness(errands_redis_url)
    path = str(request.config.getini("errands_pool") or "")
    try:
        if path:
            from .cli import load_pool

            harness.use(load_pool(path))
        yield harness
    finally:
        await harness.aclose()


@pytest.fixture
def errands(errands_harness: ErrandsHarness) -> ErrandsHarness:
    """The former name of ``errands_harness``, kept working; prefer the new one: a parameter
    named ``errands`` hides the package inside the test."""
    return errands_harness
