"""A project's own worker module, run as ``python -m tests.support.apps.own_worker`` (no
errands CLI).

Like a real project it reads its settings from the environment (ERRANDS_REDIS_URL,
ERRANDS_NAMESPACE) and ends in ``pool.run()``.
"""

from __future__ import annotations

import os

from errands import Job, WorkerPool

from . import UNSET_URL, timed

pool = WorkerPool.from_url(
    os.environ.get("ERRANDS_REDIS_URL", UNSET_URL),
    namespace=os.environ.get("ERRANDS_NAMESPACE", "errands"),
    concurrency=2,
    shutdown_grace=5.0,
)


@pool.job("work")
async def work(job: Job, seconds: float = 0.05) -> None:
    await timed(pool, job, seconds)


if __name__ == "__main__":
    pool.run()
