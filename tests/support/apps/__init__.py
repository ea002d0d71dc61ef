"""Small worker apps run by the subprocess tests
(``python -m errands worker tests.support.apps.X:pool``).

They hold no state of their own: handlers record what happened (pid, start and end times) in
Redis lists under the namespace of the pool that runs them (``--namespace`` of the test), so
the test process can read them back. The Redis URL and namespace always come from the command
line (or, for ``own_worker``, the environment).
"""

from __future__ import annotations

import os
import time
from typing import Any

import orjson

from errands import Job, WorkerPool

# Never used: the tests always pass --redis (a closed port, so a forgotten flag fails fast
# instead of touching a shared server).
UNSET_URL = "redis://127.0.0.1:9/0"


def record_key(namespace: str, what: str) -> str:
    """The list a test app appends its records to (inside the namespace's hash tag)."""
    return "errands:{" + namespace + "}:test:" + what


async def record(pool: WorkerPool, what: str, job: Job, **fields: Any) -> None:
    """Append ``{"id", "pid", **fields}`` to the ``what`` list of the pool's namespace."""
    entry = {"id": job.id, "pid": os.getpid(), **fields}
    await pool.redis.rpush(record_key(pool.namespace, what), orjson.dumps(entry))


async def timed(pool: WorkerPool, job: Job, seconds: float) -> None:
    """Record the start, sleep ``seconds``, record the (start, end) interval."""
    import asyncio

    start = time.time()
    await record(pool, "starts", job, t=start)
    await asyncio.sleep(seconds)
    await record(pool, "intervals", job, start=start, end=time.time())
