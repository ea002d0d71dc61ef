"""Graphs built otherwise than with ``wf.add`` (``Workflow(nodes=...)``, the canvas' options, a
block joined into a chain) and a member's partition: a ``WorkflowError`` naming the node and
what to do, before anything is stored. They were a KeyError, "min() arg is an empty sequence",
a bare TypeError, a ValueError, or an explicit node id silently renamed (review hunt-wf)."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from errands import Enqueuer, Workflow, chain, group
from errands.errors import WorkflowError
from errands.workflows.graph import Node


@pytest.mark.parametrize(
    ("nodes", "match"),
    [
        ({"x": Node("a", "work", {})}, r"node 'a' is under the key 'x'.*key each node by its id"),
        (  # (was "min() arg is an empty sequence")
            {"a": Node("a", "work", {}), "b": Node("a", "work", {})},
            r"node 'a' is under the key 'b'",
        ),
        ({"a": Node("b", "work", {}, after=("a",))}, r"node 'b' is under the key 'a'"),
        ({"a": Node("a", "work", {}, after="b")}, r"node 'a': its after must be a tuple"),  # type: ignore[arg-type]
        ({"a": ("work", {})}, r"node 'a': a workflow's nodes must be Nodes"),
    ],
)
async def test_nodes_given_by_hand_not_keyed_by_their_ids_are_refused(
    redis: Redis, namespace: str, nodes: dict[str, Node], match: str
) -> None:
    wf = Workflow("w", id="w1", nodes=nodes)
    with pytest.raises(WorkflowError, match=match):
        wf.ordered()
    with pytest.raises(WorkflowError, match=match):
        await Enqueuer(redis, namespace=namespace, strict=None).enqueue_workflow(wf)
    assert await redis.keys(f"*{namespace}*") == []


def test_a_chain_step_with_after_in_its_options_is_refused() -> None:
    with pytest.raises(WorkflowError, match=r"step 'b': its options cannot hold after"):
        chain(("a", {}), ("b", {}, {"after": ["a"]}))
    with pytest.raises(WorkflowError, match=r"step 'b': its options must be a dict"):
        chain(("a", {}), ("b", {}, ["id", "x"]))  # type: ignore[arg-type]


def test_a_partition_that_is_not_one_is_a_workflow_error() -> None:
    with pytest.raises(WorkflowError, match=r"node 'work': invalid partition 5"):
        Workflow("w").add("work", {}, partition=5)  # type: ignore[arg-type]


async def test_a_partition_that_is_not_one_is_a_workflow_error_in_run_add(
    redis: Redis, namespace: str
) -> None:
    wf = Workflow("w", id="w1")
    wf.add("work", {}, id="a")
    run = await Enqueuer(redis, namespace=namespace, strict=None).enqueue_workflow(wf)
    with pytest.raises(WorkflowError, match=r"node 'b': invalid partition 5"):
        await run.add("work", {}, id="b", partition=5)  # type: ignore[arg-type]
    assert await redis.hexists(run.keys.workflow("w1", "nodes"), "b") == 0


def test_a_joined_block_with_an_explicit_id_already_there_is_refused() -> None:
    with pytest.raises(WorkflowError, match=r"node 'x' of the block 'group' joined into 'chain'"):
        chain(("a", {}, {"id": "x"}), group([("b", {}, {"id": "x"})]))
    # default ids (the job name, name#n) are numbered on, as before
    wf = chain(group([("p", {}), ("p", {})]), group([("p", {}), ("p", {})]))
    assert sorted(wf.nodes) == ["p", "p#2", "p#3", "p#4"]
    assert wf.nodes["p#3"].after == ("p", "p#2")
