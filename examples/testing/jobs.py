"""The app under test: a pool with two typed jobs (see test_jobs.py)."""

from __future__ import annotations

import os

from errands import FixedBackoff, WorkerPool

pool = WorkerPool.from_url(
    os.environ.get("REDIS_URL", "redis://localhost:6379/0"), namespace="myapp"
)
outbox: list[str] = []  # stands in for an email service


class MailServerDown(Exception):
    pass


@pool.job("send_welcome", max_fails=3, backoff=FixedBackoff(60))
async def send_welcome(address: str, subject: str = "Welcome!") -> None:
    if address.endswith("@down.example"):
        raise MailServerDown(address)
    outbox.append(f"{address}: {subject}")


@pool.job("add")
async def add(a: int, b: int) -> int:
    return a + b
