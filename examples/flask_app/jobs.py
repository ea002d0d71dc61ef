"""The jobs of the example app, shared by the web app (which enqueues them) and the worker.

``REDIS_URL`` and ``ERRANDS_NAMESPACE`` come from the environment.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from errands import Job, WorkerPool

REDIS_URL = os.environ.get("REDIS_URL", "redis://localhost:6379/0")
NAMESPACE = os.environ.get("ERRANDS_NAMESPACE", "example")

log = logging.getLogger("example.jobs")
pool = WorkerPool.from_url(REDIS_URL, namespace=NAMESPACE)


class Mailer:
    """Stands in for a resource opened once per worker process (an SMTP or HTTP client)."""

    def __init__(self) -> None:
        self.sent = 0

    async def send(self, address: str, subject: str) -> None:
        self.sent += 1
        log.info("mail %d to %s: %s", self.sent, address, subject)


@pool.on_startup
async def open_resources(context: dict[str, Any]) -> None:
    context["mailer"] = Mailer()


@pool.job("send_welcome", max_fails=5)
async def send_welcome(job: Job, address: str, subject: str = "Welcome!") -> None:
    """Takes the Job first: it needs the pool's shared context."""
    await job.context["mailer"].send(address, subject)


@pool.job("word_count", timeout=10)
async def word_count(text: str) -> int:
    """A typed handler without the Job; its return value is the job's result."""
    return len(text.split())
