"""Workflows: members (jobs) that run after their dependencies, with callbacks, stored at once
and released in the same script as each dependency's end (see docs/workflows.md)."""

from .canvas import chain, chord, group
from .graph import DEFAULT_LINGER, Callback, Node, Policy, Workflow
from .run import NodeState, WorkflowRun, WorkflowStatus

__all__ = [
    "DEFAULT_LINGER",
    "Callback",
    "Node",
    "NodeState",
    "Policy",
    "Workflow",
    "WorkflowRun",
    "WorkflowStatus",
    "chain",
    "chord",
    "group",
]
