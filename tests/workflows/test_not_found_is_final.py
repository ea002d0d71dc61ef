"""A handler that meets ``WorkflowNotFoundError`` (its run's linger is over, or the run it waits
for is unknown) fails for good at once: it went to the retry set and spent every attempt on a
run that cannot come back. ``JobNotFoundError`` stays an ordinary failure, retried: the id a
handler looks up may be one not stored yet."""

from __future__ import annotations

import orjson

from errands import (
    Client,
    Job,
    JobNotFoundError,
    NonRetryableError,
    Workflow,
    WorkflowNotFoundError,
)

from .conftest import Env

PARTS = ("", "open", "out", "nodes", "res", "env", "in")


async def linger_over(env: Env, run_id: str) -> None:
    """What the linger's expiry leaves of a run: none of its keys."""
    await env.redis.delete(*(env.keys.workflow(run_id, p) for p in PARTS))


async def dead_after_one_attempt(env: Env, job_id: str, name: str) -> None:
    assert await env.redis.zscore(env.keys.dead, job_id) is not None
    assert await env.redis.zscore(env.keys.retry(name), job_id) is None
    error = orjson.loads(await env.redis.hget(env.keys.errors, job_id))
    assert error["attempt"] == 1 and "WorkflowNotFoundError" in error["error"]


def test_workflow_not_found_is_non_retryable() -> None:
    assert issubclass(WorkflowNotFoundError, NonRetryableError)
    assert issubclass(WorkflowNotFoundError, LookupError)  # (still caught as before)


async def test_a_callback_whose_run_lingered_out_is_not_retried(env: Env) -> None:
    @env.pool.job("late")
    async def late(job: Job) -> None:
        assert job.workflow_id is not None
        await linger_over(env, job.workflow_id)  # (as if it ran past the linger)
        await job.dependency_results()

    wf = Workflow()
    wf.add("work", {"value": 1}, id="a")
    wf.on_success("late", {})
    run = await env.enqueuer.enqueue_workflow(wf)
    await env.pool.drain(timeout=20)
    await dead_after_one_attempt(env, run.callback_job_id("on_success"), "late")


async def test_a_member_waiting_on_an_unknown_run_is_not_retried(env: Env) -> None:
    client = Client(env.redis, namespace=env.namespace)

    @env.pool.job("waiter")
    async def waiter(job: Job) -> None:
        await client.workflow("gone").wait(timeout=5)

    wf = Workflow()
    wf.add("waiter", {}, id="w")
    run = await env.enqueuer.enqueue_workflow(wf)
    await env.pool.drain(timeout=20)
    await dead_after_one_attempt(env, run.job_id("w"), "waiter")
    status = await run.wait(timeout=5)  # its end is handled: the run failed, as for any death
    assert status.status == "failed" and status.failed_node == "w"


async def test_a_handler_meeting_job_not_found_is_retried(env: Env) -> None:
    """Not made a ``NonRetryableError`` as ``WorkflowNotFoundError`` was: ``result()`` and the
    admin calls raise it for an id that may be stored later (one ``enqueue_on_commit`` returned
    before its commit, a job another process is about to enqueue, a workflow member still
    waiting for its dependencies, which ``result()`` does not find), and a retry then finds it."""
    assert not issubclass(JobNotFoundError, NonRetryableError)
    client = Client(env.redis, namespace=env.namespace)

    @env.pool.job("follow")
    async def follow(job: Job) -> object:
        return await client.result(job.args["target"], timeout=10)

    job = await env.enqueuer.enqueue("follow", {"target": "later-1"})
    assert job is not None
    await env.pool.drain(timeout=20)
    assert await env.redis.zscore(env.keys.dead, job.id) is None
    assert await env.redis.zscore(env.keys.retry("follow"), job.id) is not None
    error = orjson.loads(await env.redis.hget(env.keys.errors, job.id))
    assert error["attempt"] == 1 and "JobNotFoundError" in error["error"]
    await env.enqueuer.enqueue("work", {"value": 7}, job_id="later-1")  # stored at last
    await env.redis.zadd(env.keys.retry("follow"), {job.id: 0})  # (its retry due now)
    await env.pool.drain(timeout=20)
    assert await job.result(timeout=5) == 7
