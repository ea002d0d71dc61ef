"""Celery-style sugar on top of ``Workflow``: ``chain``, ``group``, ``chord``. Pure.

A step is ``(name, args)`` or ``(name, args, options)`` (options as for ``Workflow.add``:
``id``, ``priority``, ``retry``, ``on_dependency_failure``), or a Workflow (a group, another
chain) whose members join as a block.

>>> await enqueuer.enqueue_workflow(chain(("a", {}), ("b", {})))
>>> await enqueuer.enqueue_workflow(chord(group(("p", {"i": i}) for i in range(10)), ("sum", {})))
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import WorkflowError
from .graph import Node, Workflow

__all__ = ["Step", "chain", "chord", "group"]

Step = (
    tuple[str, Mapping[str, Any] | None]
    | tuple[str, Mapping[str, Any] | None, Mapping[str, Any]]
    | Workflow
)


def _join(wf: Workflow, step: Step, after: list[str]) -> list[str]:
    """Add ``step`` to ``wf`` after the nodes ``after``; returns the step's last nodes."""
    if isinstance(step, Workflow):
        if step.callbacks:
            raise WorkflowError("a workflow joined into another cannot have callbacks")
        ids: dict[str, str] = {}
        for node in step.ordered():
            deps = [ids[d] for d in node.after] if node.after else after
            if node.id in wf.nodes and not _default_id(node):
                raise WorkflowError(
                    f"node {node.id!r} of the block {step.name!r} joined into {wf.name!r} is "
                    "already there: give one of them another id (a default id, the job name "
                    "or name#n, is numbered on instead)"
                )
            added = wf.add(
                node.name,
                node.args,
                after=deps,
                on_dependency_failure=node.on_dependency_failure,
                priority=node.priority,
                retry=node.retry,
                partition=node.partition,
                id=node.id if node.id not in wf.nodes else None,
            )
            ids[node.id] = added.id
        children = {d for n in step.nodes.values() for d in n.after}
        return [ids[n] for n in step.nodes if n not in children] or after
    if not isinstance(step, tuple) or len(step) not in (2, 3) or not isinstance(step[0], str):
        raise WorkflowError(
            f"a step is (name, args), (name, args, options) or a Workflow: {step!r}"
        )
    options = step[2] if len(step) == 3 else {}
    if not isinstance(options, Mapping) or not all(isinstance(k, str) for k in options):
        raise WorkflowError(f"step {step[0]!r}: its options must be a dict, got {options!r}")
    if "after" in options:
        raise WorkflowError(
            f"step {step[0]!r}: its options cannot hold after (a step waits for the previous "
            "step of its chain); build the graph with Workflow.add for other dependencies"
        )
    return [wf.add(step[0], step[1], after=after, **options).id]


def _default_id(node: Node) -> bool:
    """``node``'s id is one ``Workflow.add`` gives by default (its job name, or name#n), which
    a block joined into a workflow may take another of; an id chosen otherwise is kept."""
    rest = node.id[len(node.name) :]
    return node.id.startswith(node.name) and (
        not rest or re.fullmatch(r"#[0-9]+", rest) is not None
    )


def chain(*steps: Step, name: str = "chain") -> Workflow:
    """Each step runs after the previous one (after all of it, for a group)."""
    wf = Workflow(name)
    last: list[str] = []
    for step in steps:
        last = _join(wf, step, last)
    return wf


def group(steps: Iterable[Step], *, name: str = "group") -> Workflow:
    """The steps run side by side."""
    wf = Workflow(name)
    for step in steps:
        _join(wf, step, [])
    return wf


def chord(header: Workflow | Iterable[Step], body: Step, *, name: str = "chord") -> Workflow:
    """``body`` runs once every step of ``header`` has ended (with the default policy
    "fail": only if they all succeeded); it reads their results with
    ``job.dependency_results()``."""
    head = header if isinstance(header, Workflow) else group(header)
    return chain(head, body, name=name)
