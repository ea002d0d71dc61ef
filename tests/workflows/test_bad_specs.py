"""Workflow-building mistakes: a WorkflowError naming the argument where it is given (they were
raw TypeErrors, a redis DataError at enqueue, or an AttributeError from enqueue_workflow)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from redis.asyncio import Redis

from errands import Enqueuer, RetryOptions, Workflow
from errands.errors import WorkflowError
from errands.store.keys import Keys


async def test_linger_takes_a_timedelta(redis: Redis, namespace: str) -> None:
    wf = Workflow("w", id="w1", linger=timedelta(hours=1))
    assert wf.linger == 3600.0
    wf.add("work", {}, id="a")
    await Enqueuer(redis, namespace=namespace, strict=None).enqueue_workflow(wf)
    assert await redis.hget(Keys(namespace).workflow("w1"), "linger") == b"3600000"


@pytest.mark.parametrize("linger", ["3600", None, True, float("nan"), float("inf"), 0, -1])
def test_bad_lingers_are_refused(linger: object) -> None:
    with pytest.raises(WorkflowError, match="linger must be > 0 seconds"):
        Workflow("w", linger=linger)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", [None, 5, "x" * 201])
def test_a_workflow_name_is_a_short_str(name: object) -> None:
    with pytest.raises(WorkflowError, match="name must be a str"):
        Workflow(name)  # type: ignore[arg-type]


async def test_a_name_set_since_is_checked_by_the_enqueue(redis: Redis, namespace: str) -> None:
    wf = Workflow("w")
    wf.add("work")
    wf.name = None  # type: ignore[assignment]
    with pytest.raises(WorkflowError, match="name must be a str"):
        await Enqueuer(redis, namespace=namespace, strict=None).enqueue_workflow(wf)


@pytest.mark.parametrize("after", [None, 5, [1], ["a", None]])
def test_after_must_be_nodes_or_ids(after: object) -> None:
    wf = Workflow("w")
    wf.add("a")
    with pytest.raises(WorkflowError, match="node 'b': after must be nodes or node ids"):
        wf.add("b", after=after)  # type: ignore[arg-type]
    assert list(wf.nodes) == ["a"]


def test_after_takes_nodes_ids_and_generators() -> None:
    wf = Workflow("w")
    a = wf.add("a")
    assert wf.add("b", after=a).after == ("a",)
    assert wf.add("c", after=(n for n in [a, "b"])).after == ("a", "b")


def test_a_node_of_another_workflow_is_refused() -> None:
    other = Workflow("other")
    foreign = other.add("a", {"x": 1})
    wf = Workflow("w")
    wf.add("a", {"x": 2})
    with pytest.raises(WorkflowError, match="after names a node of another workflow"):
        wf.add("b", after=[foreign])


@pytest.mark.parametrize("args", [[1, 2], "xy", 5])
def test_args_must_be_a_dict(args: object) -> None:
    wf = Workflow("w")
    with pytest.raises(WorkflowError, match="node 'a': args must be a dict"):
        wf.add("a", args)  # type: ignore[arg-type]
    with pytest.raises(WorkflowError, match="on_success: args must be a dict"):
        wf.on_success("done", args)  # type: ignore[arg-type]


@pytest.mark.parametrize("retry", ["3", 3, {"max_fails": 3}])
def test_retry_must_be_retry_options(retry: object) -> None:
    wf = Workflow("w")
    with pytest.raises(WorkflowError, match="node 'a': retry must be RetryOptions"):
        wf.add("a", retry=retry)  # type: ignore[arg-type]
    with pytest.raises(WorkflowError, match="on_failure: retry must be RetryOptions"):
        wf.on_failure("oops", retry=retry)  # type: ignore[arg-type]
    assert wf.add("a", retry=RetryOptions(max_fails=3)).retry == RetryOptions(max_fails=3)


@pytest.mark.parametrize("priority", [True, None, 1.5, 5000])
def test_priority_is_checked_where_it_is_given(priority: object) -> None:
    wf = Workflow("w")
    with pytest.raises(WorkflowError, match="node 'a': priority must be an int"):
        wf.add("a", priority=priority)  # type: ignore[arg-type]
    with pytest.raises(WorkflowError, match="on_success: priority must be an int"):
        wf.on_success("done", priority=priority)  # type: ignore[arg-type]


async def test_a_dynamic_add_checks_its_arguments(redis: Redis, namespace: str) -> None:
    wf = Workflow("w")
    wf.add("work", {}, id="s")
    wf.add("work", {}, id="m", after=["s"])
    run = await Enqueuer(redis, namespace=namespace, strict=None).enqueue_workflow(wf)
    bad: list[tuple[dict[str, object], str]] = [
        ({"after": None}, "after must be nodes or node ids"),
        ({"before": 5}, "before must be nodes or node ids"),
        ({"args": [1, 2]}, "args must be a dict"),
        ({"priority": True}, "priority must be an int"),
    ]
    for kwargs, message in bad:
        options = {"args": {}, **kwargs}
        args = options.pop("args")
        with pytest.raises(WorkflowError, match=f"node 'x': {message}"):
            await run.add("work", args, id="x", **options)  # type: ignore[arg-type]
    assert "x" not in (await run.status()).nodes
    await run.add("work", {"n": 1}, id="x", after=("s" for _ in [1]), before=["m"])
    assert (await run.status()).nodes["x"].name == "work"


@pytest.mark.parametrize("name", [None, 5, "a b", ""])
def test_a_member_job_name_is_checked_where_it_is_given(name: object) -> None:
    wf = Workflow("w")
    with pytest.raises(WorkflowError, match="invalid job name"):
        wf.add(name, id="x")  # type: ignore[arg-type]
    with pytest.raises(WorkflowError, match="invalid job name"):
        wf.add(name)  # type: ignore[arg-type]
    with pytest.raises(WorkflowError, match="on_success: invalid job name"):
        wf.on_success(name)  # type: ignore[arg-type]
    assert wf.nodes == {}


@pytest.mark.parametrize(
    ("kwargs", "why"),
    [
        ({"delay": 5}, "cannot be scheduled for later"),
        ({"at": None, "dedup": "k"}, "cannot be scheduled for later"),
        ({"job_id": "j"}, "given a job id"),
        ({"afterr": ["a"]}, ""),
    ],
)
async def test_an_add_names_an_argument_it_does_not_take(
    redis: Redis, namespace: str, kwargs: dict[str, object], why: str
) -> None:
    """``wf.add(..., delay=5)`` (an option of Enqueuer.enqueue a member does without, or a
    typo): a WorkflowError naming it, saying why, and what add accepts; was Python's bare
    TypeError (an unexpected keyword argument). So for a run's add, nothing added."""
    names = ", ".join(sorted(kwargs))
    wf = Workflow("w")
    wf.add("work", {}, id="s")
    with pytest.raises(
        WorkflowError, match=f"Workflow.add\\('work'\\) does not accept {names}"
    ) as e:
        wf.add("work", {}, id="x", **kwargs)  # type: ignore[arg-type]
    assert why in str(e.value) and "accepts name, args, after, on_dependency_failure" in str(
        e.value
    )
    assert list(wf.nodes) == ["s"]
    run = await Enqueuer(redis, namespace=namespace, strict=None).enqueue_workflow(wf)
    with pytest.raises(WorkflowError, match=f"WorkflowRun.add\\('work'\\) does not accept {names}"):
        await run.add("work", {}, id="x", **kwargs)  # type: ignore[arg-type]
    assert "x" not in (await run.status()).nodes


@pytest.mark.parametrize("which", ["on_success", "on_failure"])
@pytest.mark.parametrize(
    ("kwargs", "why"),
    [({"delay": 5}, "cannot be scheduled for later"), ({"after": ["a"]}, "")],
)
def test_a_callback_names_an_argument_it_does_not_take(
    which: str, kwargs: dict[str, object], why: str
) -> None:
    """``wf.on_success(..., delay=5)``: a WorkflowError naming the argument, why for an option
    of Enqueuer.enqueue, and what it accepts, as ``add``; was Python's bare TypeError."""
    wf = Workflow("w")
    with pytest.raises(WorkflowError, match=f"Workflow.{which}\\('done'\\) does not accept") as e:
        getattr(wf, which)("done", {}, **kwargs)
    assert f"{next(iter(kwargs))}" in str(e.value) and why in str(e.value)
    assert str(e.value).endswith("; it accepts name, args, priority, retry")
    assert wf.callbacks == {}
