"""chain, group, chord: the graphs they build (pure), and a chord run end to end."""

from __future__ import annotations

import pytest

from errands import Workflow, WorkflowError, chain, chord, group
from tests.support.invariants import assert_invariants

from .conftest import Env


def shape(wf: Workflow) -> dict[str, tuple[str, ...]]:
    return {n.id: n.after for n in wf.nodes.values()}


def test_chain_runs_each_step_after_the_previous() -> None:
    wf = chain(("a", {}), ("b", {"x": 1}), ("a", {}, {"id": "again"}))
    assert shape(wf) == {"a": (), "b": ("a",), "again": ("b",)}
    assert wf.nodes["b"].args == {"x": 1}


def test_group_runs_side_by_side() -> None:
    wf = group(("p", {"i": i}) for i in range(3))
    assert shape(wf) == {"p": (), "p#2": (), "p#3": ()}


def test_chord_runs_the_body_after_the_whole_header() -> None:
    wf = chord(group(("p", {"i": i}) for i in range(3)), ("sum", {}))
    assert shape(wf)["sum"] == ("p", "p#2", "p#3")


def test_chain_of_groups_joins_blocks() -> None:
    wf = chain(("fetch", {}), group([("p", {}), ("q", {})]), ("merge", {}))
    assert shape(wf) == {"fetch": (), "p": ("fetch",), "q": ("fetch",), "merge": ("p", "q")}


def test_a_joined_chain_keeps_its_inner_order() -> None:
    wf = chain(("a", {}), chain(("b", {}), ("c", {})), ("d", {}))
    assert shape(wf) == {"a": (), "b": ("a",), "c": ("b",), "d": ("c",)}


def test_bad_steps_are_refused() -> None:
    with pytest.raises(WorkflowError, match="a step is"):
        chain("a")  # type: ignore[arg-type]
    inner = Workflow()
    inner.on_success("x")
    with pytest.raises(WorkflowError, match="callbacks"):
        chain(("a", {}), inner)


async def test_a_chord_runs_and_its_body_sees_every_result(env: Env) -> None:
    wf = chord(group(("work", {"value": i}) for i in range(10)), ("merge", {}))
    run = await env.enqueuer.enqueue_workflow(wf)
    await env.pool.drain(timeout=20)
    status = await run.wait(timeout=5)
    assert status.status == "succeeded"
    results = env.deps[run.job_id("merge")]
    assert sorted(results.values()) == list(range(10))
    assert status.nodes["merge"].result == 10
    await assert_invariants(env.redis, env.namespace, drained=True)
