"""Worker app running one job at a time per process (used by the CLI tests).
``python -m errands worker tests.support.apps.single:pool --redis URL --namespace NS
[--concurrency N]``."""

from __future__ import annotations

from errands import Job, WorkerPool

from . import UNSET_URL, timed

pool = WorkerPool(url=UNSET_URL, concurrency=1, shutdown_grace=5.0)


@pool.job("work")
async def work(job: Job, seconds: float = 0.05) -> None:
    await timed(pool, job, seconds)


def make_pool() -> WorkerPool:
    """A factory, for ``tests.support.apps.single:make_pool``."""
    return pool


not_a_pool = 42
