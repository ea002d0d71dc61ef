"""errands works without its optional speed-ups (uvloop, hiredis) and without the optional
integrations' packages: a subprocess blocks their import and runs a tiny enqueue + process."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid

BLOCKED = (
    "uvloop",
    "hiredis",
    "prometheus_client",
    "opentelemetry",
    "pydantic",
    "fastapi",
    "aiohttp",
)

SCRIPT = textwrap.dedent(
    """
    import asyncio, sys

    BLOCKED = {blocked!r}

    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{{name}} is blocked")
            return None

    sys.meta_path.insert(0, Block())
    for name in list(sys.modules):
        if name.split(".")[0] in BLOCKED:
            del sys.modules[name]

    import redis.utils
    from errands import Enqueuer, WorkerPool
    from errands.worker.runner import run_pool

    assert not redis.utils.HIREDIS_AVAILABLE
    pool = WorkerPool.from_url({url!r}, namespace={namespace!r})
    done = []

    in_flight = []

    @pool.job("add")
    async def add(a: int, b: int) -> int:
        done.append(a + b)
        # no exception is being handled around a handler (the ImportError of uvloop was, so
        # every error a handler raised carried it as its context, in its stored traceback)
        in_flight.append(repr(sys.exc_info()[1]))
        return a + b

    async def enqueue():
        async with Enqueuer.from_url({url!r}, namespace={namespace!r}) as enqueuer:
            pool.bind_enqueuer(enqueuer)
            await add.enqueue(1, 2)
            await enqueuer.enqueue("add", {{"a": 3, "b": 4}})

    asyncio.run(enqueue())
    pool.bind_enqueuer(None)
    run_pool(pool, burst=True)  # the worker's own entry point: picks uvloop when it can
    assert sorted(done) == [3, 7], done
    assert in_flight == ["None", "None"], in_flight
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    assert not loaded, loaded
    print("ok")
    """
)


def test_runs_without_uvloop_hiredis_and_the_optional_integrations(redis_url: str) -> None:
    script = SCRIPT.format(blocked=BLOCKED, url=redis_url, namespace="c" + uuid.uuid4().hex[:10])
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


UVLOOP_SCRIPT = textwrap.dedent(
    """
    import asyncio
    from errands import Enqueuer, WorkerPool
    from errands.worker.runner import run_pool

    pool = WorkerPool.from_url({url!r}, namespace={namespace!r})
    loops = []

    @pool.job("where")
    async def where() -> None:
        loops.append(type(asyncio.get_running_loop()).__module__)

    async def enqueue():
        async with Enqueuer.from_url({url!r}, namespace={namespace!r}) as enqueuer:
            await enqueuer.enqueue("where", {{}})

    asyncio.run(enqueue())
    run_pool(pool, burst=True)  # the entry point of pool.run() and python -m errands worker
    print(loops)
    """
)


def test_the_worker_runs_on_uvloop_when_it_is_installed(redis_url: str) -> None:
    """uvloop is installed with the dev extras: the worker's own entry point runs its jobs on it
    (README and docs/workers.md say so)."""
    script = UVLOOP_SCRIPT.format(url=redis_url, namespace="c" + uuid.uuid4().hex[:10])
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['uvloop']", proc.stdout
