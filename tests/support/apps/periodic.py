"""Worker app with periodic schedules on a clock shared through a file (``fileclock.py``):
``ERRANDS_TEST_CLOCK=path python -m errands worker tests.support.apps.periodic:pool --redis URL
--namespace NS``. The scheduled jobs are not handled by anyone: they stay on their queues so
the test can count exactly what was enqueued."""

from __future__ import annotations

import os
from datetime import timedelta

from errands import Job, WorkerPool

from . import UNSET_URL
from .fileclock import FileClock

HOUR = 3600.0

pool = WorkerPool(
    url=UNSET_URL,
    clock=FileClock(os.environ.get("ERRANDS_TEST_CLOCK", "/nonexistent")),
    concurrency=1,
    shutdown_grace=1.0,
    schedule_refresh=0.02,
)


@pool.job("noop")
async def noop(job: Job) -> None:
    pass


pool.hourly("tick_hourly", tz="America/New_York", misfire_grace=HOUR)
pool.periodically_enqueue("*/10 * * * *", "tick_10m", misfire_grace=HOUR)
pool.periodically_enqueue("30 1 * * *", "tick_0130", tz="America/New_York", misfire_grace=HOUR)
pool.every(timedelta(minutes=45), "tick_45m", misfire_grace=HOUR)
