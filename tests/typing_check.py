"""Checked by mypy in test_typing.py, not run: the typed enqueue side of job functions, and the
SyncEnqueuer's options (typed as the Enqueuer's), and the options a workflow's add refuses.

Every line ending in ``# error`` must be rejected by mypy; every other line must pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from errands import Enqueuer, Job, SyncEnqueuer, WorkerPool, Workflow
from errands.typed import JobHost

pool = WorkerPool.from_url("redis://localhost:6379/0", namespace="typing")


def pool_is_a_job_host(p: WorkerPool) -> JobHost:
    return p


@dataclass
class User:
    id: int


@pool.job("send_email")
async def send_email(address: str, subject: str = "hi") -> None: ...


@pool.job("welcome")
async def welcome(job: Job, when: datetime, user: User) -> int:
    return job.attempt


@pool.job()
def thumbnail(job: Job, path: str) -> str:
    return path


async def good(enqueuer: Enqueuer, job: Job) -> None:
    await send_email.enqueue(address="a@example.com")
    await send_email.enqueue("a@example.com", subject="x")
    await send_email.using(enqueuer, delay=5, priority=3).enqueue(address="a")
    await welcome.enqueue(datetime.now(), User(1))
    await thumbnail.enqueue(path="a.png")
    await enqueuer.enqueue_many([send_email.item("a"), thumbnail.item(path="b")])
    found = await welcome.enqueue(when=datetime.now(), user=User(2))
    if found is not None:
        await found.result(timeout=1)
    # calling the function itself is unchanged
    await send_email("a@example.com")
    attempt: int = await welcome(job, datetime.now(), User(1))
    path: str = thumbnail(job, "c.png")
    print(attempt, path)


async def bad(enqueuer: Enqueuer, job: Job) -> None:
    await send_email.enqueue(address=1)  # error
    await send_email.enqueue(adress="a@example.com")  # error
    await send_email.enqueue()  # error
    await send_email.enqueue("a", "b", "c")  # error
    await welcome.enqueue(when="2026-01-01", user=User(1))  # error
    await welcome.enqueue(job, datetime.now(), User(1))  # error
    await thumbnail.enqueue(path=3)  # error
    await send_email.using(enqueuer).enqueue(address=2)  # error
    await send_email.using(enqueuer, dealy=5).enqueue("a")  # error
    send_email.item(subject="no address")  # error
    await welcome(datetime.now(), User(1))  # error


def sync_options(sync: SyncEnqueuer) -> None:
    sync.enqueue("send_email", {"address": "a"}, partition="customer:7", job_id="e-1")
    sync.enqueue_unique("send_email", {}, job_id="u-1", partition="customer:7", ttl=60.0)
    sync.enqueue("send_email", {}, partition=7)  # error
    sync.enqueue_unique("send_email", {}, job_id=1)  # error
    sync.enqueue_unique("send_email", {}, partiton="customer:7")  # error


async def workflow_options(run_of: Enqueuer) -> None:
    wf = Workflow("typing")
    wf.add("send_email", {"address": "a"}, id="a", priority=1, partition="customer:7")
    wf.add("send_email", {}, delay=5)  # error
    wf.on_success("send_email", {}, priority=1)
    wf.on_failure("send_email", {}, delay=5)  # error
    run = await run_of.enqueue_workflow(wf)
    await run.add("send_email", {}, before=["a"])
    await run.add("send_email", {}, at=None)  # error
