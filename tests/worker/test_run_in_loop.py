"""``pool.run()`` called from async code (a running event loop): one error saying what to use
instead, not asyncio.run()'s and a never-awaited coroutine warning."""

from __future__ import annotations

import warnings

import pytest

from errands import WorkerPool


async def test_run_inside_a_running_loop_names_async_with() -> None:
    pool = WorkerPool.from_url("redis://127.0.0.1:9/0")  # never reached

    @pool.job()
    async def ping() -> None: ...

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "coroutine ... was never awaited"
        with pytest.raises(RuntimeError, match="in async code, use `async with pool:`"):
            pool.run()
    assert pool.worker is None  # nothing started
