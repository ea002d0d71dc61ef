"""Building and validating workflows: pure, no Redis."""

from __future__ import annotations

import pytest

from errands import Workflow, WorkflowError
from errands.workflows.graph import check_node_id


def test_ids_default_to_the_job_name_then_numbered() -> None:
    wf = Workflow("w")
    a = wf.add("parse")
    b = wf.add("parse")
    c = wf.add("parse", id="third")
    assert (a.id, b.id, c.id) == ("parse", "parse#2", "third")


def test_after_takes_nodes_or_ids_once_each() -> None:
    wf = Workflow()
    a = wf.add("a")
    b = wf.add("b", after=[a, "a"])
    assert b.after == ("a",)
    assert wf.edges() == [("a", "b")]


def test_order_puts_dependencies_first() -> None:
    wf = Workflow()
    wf.add("merge", after=["p1", "p2"])
    wf.add("p1", after=["fetch"])
    wf.add("p2", after=["fetch"])
    wf.add("fetch")
    order = [n.id for n in wf.ordered()]
    assert order.index("fetch") < order.index("p1") < order.index("merge")
    assert order.index("p2") < order.index("merge")


def test_unknown_dependency_is_refused() -> None:
    wf = Workflow()
    wf.add("a", after=["nope"])
    with pytest.raises(WorkflowError, match="'a' depends on unknown node 'nope'"):
        wf.ordered()


def test_cycle_is_refused_and_named() -> None:
    wf = Workflow()
    wf.add("a", after=["c"])
    wf.add("b", after=["a"])
    wf.add("c", after=["b"])
    wf.add("d", after=["a"])
    with pytest.raises(WorkflowError, match=r"cycle: a -> b -> c -> a"):
        wf.ordered()


def test_self_dependency_is_refused() -> None:
    wf = Workflow()
    wf.add("a", after=["a"])
    with pytest.raises(WorkflowError, match="depends on itself"):
        wf.ordered()


def test_repeated_node_and_bad_options_are_refused() -> None:
    wf = Workflow()
    wf.add("a")
    with pytest.raises(WorkflowError, match="already"):
        wf.add("b", id="a")
    with pytest.raises(WorkflowError, match="on_dependency_failure"):
        wf.add("c", on_dependency_failure="sometimes")  # type: ignore[arg-type]
    for bad in ("a<b", "x>y", "!cb", "with space", ""):
        with pytest.raises(WorkflowError, match="invalid node id"):
            check_node_id(bad)
