"""A run's results read once its linger is over (a callback retried past it, or run late on a
busy queue) raise ``WorkflowNotFoundError``: they read as no member at all, ``{}``, and the
handler went on with nothing."""

from __future__ import annotations

import pytest

from errands import Workflow, WorkflowNotFoundError

from .conftest import Env


async def test_results_of_a_run_whose_linger_is_over_raise(env: Env) -> None:
    wf = Workflow()
    wf.add("work", {"value": 1}, id="a")
    wf.on_success("notify", {})
    run = await env.enqueuer.enqueue_workflow(wf)
    await env.pool.drain(timeout=20)
    assert (await run.wait(timeout=5)).status == "succeeded"
    assert await run.results() == {"a": 1}
    assert await run.dependency_results("") == {"a": 1}  # what the callback reads
    # the linger is over: the run's keys expired (test_run.py test_keys_expire_after_the_linger)
    parts = ("", "open", "out", "nodes", "res")
    await env.redis.delete(*(env.keys.workflow(run.id, p) for p in parts))
    with pytest.raises(WorkflowNotFoundError):
        await run.results()
    with pytest.raises(WorkflowNotFoundError):
        await run.dependency_results("")


async def test_results_of_a_run_without_members_are_empty(env: Env) -> None:
    run = await env.enqueuer.enqueue_workflow(Workflow())
    assert await run.results() == {}
