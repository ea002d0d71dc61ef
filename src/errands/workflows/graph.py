"""Building a workflow: members (nodes), their dependencies and callbacks. Pure: no I/O.

>>> wf = Workflow("import-42")
>>> fetch = wf.add("fetch_csv", {"url": url})
>>> parts = [wf.add("parse_chunk", {"i": i}, after=[fetch]) for i in range(100)]
>>> wf.add("merge", {}, after=parts, on_dependency_failure="fail")
>>> wf.on_success("notify", {"user": 7})
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Never, get_args

from ..backoff import RetryOptions
from ..checks import seconds
from ..errors import WorkflowError
from ..handlers import check_priority
from ..limits import check_partition
from ..store.keys import check_job_name

__all__ = [
    "DEFAULT_LINGER",
    "MAX_SIZE",
    "Callback",
    "Node",
    "Policy",
    "Workflow",
    "check_node_id",
    "check_node_partition",
    "check_policy",
    "refuse_unsupported",
]

Policy = Literal["fail", "ignore", "continue"]
POLICIES: tuple[str, ...] = get_args(Policy)
DEFAULT_LINGER = 24 * 3600.0  # seconds a finished run's keys (and members' results) are kept
MAX_LINGER = 366 * 86400.0  # (lib/workflows.lua's WF_MAX_LINGER: PEXPIRE refused 10^20 ms)
# members + dependency edges + callbacks of one run (lib/workflows.lua's WF_MAX_SIZE): one script
# stores a run, linear in its size (docs/workflows.md: what 50,000 cost Redis)
MAX_SIZE = 50_000
ADD_ACCEPTS = "name, args, after, on_dependency_failure, id, priority, retry, partition"
CALLBACK_ACCEPTS = "name, args, priority, retry"  # (on_success, on_failure)
# node ids: the rules of job names, without the edge separators '<', '>' and the '!' of callbacks
_NODE_ID = re.compile(r'[^\s"\\{}:<>!\x00-\x1f\x7f]{1,120}')


def check_node_id(node: str) -> str:
    if not isinstance(node, str) or not _NODE_ID.fullmatch(node):
        raise WorkflowError(
            f"invalid node id {node!r}: use 1-120 characters without whitespace, quotes, "
            "backslashes, braces, ':', '<', '>' or '!' (pass id=... to name the node)"
        )
    return node


def check_node_partition(node_id: str, partition: object) -> str | None:
    """A member's partition (None: none), as ``Enqueuer.enqueue`` takes one (docs/limits.md);
    a ``WorkflowError`` naming the node otherwise (was check_partition's bare ValueError)."""
    if partition is None:
        return None
    try:
        return check_partition(partition)  # type: ignore[arg-type]
    except ValueError as exc:
        raise WorkflowError(f"node {node_id!r}: {exc}") from None


def check_linger(linger: object) -> float:
    """A run's linger in seconds: a number or a timedelta, above 0 and at most 366 days."""
    try:
        value = seconds("linger", linger, zero=False, most=MAX_LINGER)
    except ValueError:
        raise WorkflowError(
            f"linger must be > 0 seconds (or a timedelta) and at most 366 days, got {linger!r}"
        ) from None
    return value


def check_name(name: object) -> str:
    """A run's name: a str, for people (listings, logs), of at most 200 characters."""
    if not isinstance(name, str) or len(name) > 200:
        raise WorkflowError(f"a workflow's name must be a str of at most 200 characters: {name!r}")
    return name


def node_refs(node_id: str, what: str, value: object) -> list[NodeRef]:
    """``value`` (of ``after`` or ``before``) as a list of nodes or node ids."""
    refs = [value] if isinstance(value, Node | str) else value
    if isinstance(refs, Iterable):
        refs = list(refs)
    if not isinstance(refs, list) or not all(isinstance(r, Node | str) for r in refs):
        raise WorkflowError(f"node {node_id!r}: {what} must be nodes or node ids, got {value!r}")
    return refs


def check_member(
    what: str, name: object, args: object, priority: object, retry: object
) -> tuple[dict[str, Any], int]:
    """A member's or callback's ``args`` (a dict) and ``priority``, with its job ``name`` and
    ``retry`` checked."""
    try:
        check_job_name(name)  # type: ignore[arg-type]
    except ValueError as exc:
        raise WorkflowError(f"{what}: {exc}") from None
    if args is not None and not isinstance(args, Mapping):
        raise WorkflowError(f"{what}: args must be a dict, got {args!r}")
    if retry is not None and not isinstance(retry, RetryOptions):
        raise WorkflowError(f"{what}: retry must be RetryOptions or None, got {retry!r}")
    try:
        return dict(args or {}), check_priority(priority)  # type: ignore[arg-type]
    except ValueError as exc:
        raise WorkflowError(f"{what}: {exc}") from None


# Enqueuer.enqueue's options a member or callback does without (its run enqueues it)
ENQUEUE_ONLY = frozenset({"at", "dedup", "delay", "job_id", "meta", "timeout"})


def refuse_unsupported(where: str, given: Mapping[str, object], accepted: str) -> None:
    """A ``WorkflowError`` naming the keyword arguments ``where`` (an ``add``, ``on_success``
    or ``on_failure``) does not take, why for those of ``Enqueuer.enqueue``, and what it
    accepts (was Python's bare TypeError)."""
    if not given:
        return
    names = ", ".join(sorted(given))
    why = ""
    if ENQUEUE_ONLY & given.keys():
        why = (
            " (a workflow's member or callback is enqueued by its run: it cannot be scheduled "
            "for later, deduplicated or given a job id, meta or timeout of its own; "
            "docs/workflows.md)"
        )
    raise WorkflowError(f"{where} does not accept {names}{why}; it accepts {accepted}")


def check_policy(policy: str) -> Policy:
    if policy not in POLICIES:
        raise WorkflowError(
            f"on_dependency_failure must be one of {', '.join(POLICIES)}, got {policy!r}"
        )
    return policy  # type: ignore[return-value]


@dataclass(frozen=True)
class Node:
    """One member of a workflow: a job (``name``, ``args``) that runs once every node of
    ``after`` has ended, as ``on_dependency_failure`` says when one of them did not succeed."""

    id: str
    name: str
    args: Mapping[str, Any]
    after: tuple[str, ...] = ()
    on_dependency_failure: Policy = "fail"
    priority: int = 0
    retry: RetryOptions | None = None
    partition: str | None = None  # served in turn with its job type's partitions (limits.md)

    def __str__(self) -> str:
        return self.id


@dataclass(frozen=True)
class Callback:
    """A job enqueued once when the run ends: ``on_success`` or ``on_failure``."""

    kind: Literal["on_success", "on_failure"]
    name: str
    args: Mapping[str, Any]
    priority: int = 0
    retry: RetryOptions | None = None


NodeRef = Node | str


@dataclass
class Workflow:
    """A graph of jobs to enqueue at once with ``Enqueuer.enqueue_workflow``.

    ``name`` is for people (listings, logs); ``id`` (default: a random id) names the run and
    makes its enqueue idempotent; ``linger`` is how long (seconds) a finished run's state and
    its members' results are kept.
    """

    name: str = "workflow"
    id: str | None = None
    linger: float = DEFAULT_LINGER
    nodes: dict[str, Node] = field(default_factory=dict)
    callbacks: dict[str, Callback] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_name(self.name)
        self.linger = check_linger(self.linger)

    def add(
        self,
        name: str,
        args: Mapping[str, Any] | None = None,
        *,
        after: Iterable[NodeRef] = (),
        on_dependency_failure: Policy = "fail",
        id: str | None = None,
        priority: int = 0,
        retry: RetryOptions | None = None,
        partition: str | None = None,
        **unsupported: Never,
    ) -> Node:
        """Add a member; returns its Node (pass it, or its id, in another member's ``after``).
        Its id defaults to the job name, then ``name#2``, ``name#3``, ... ``partition``: as
        for ``Enqueuer.enqueue`` (docs/limits.md). Another keyword argument (``delay``, ``at``,
        ``dedup``, ...) raises ``WorkflowError``."""
        refuse_unsupported(f"Workflow.add({name!r})", unsupported, ADD_ACCEPTS)
        if id is None:  # (the default id is the job name: its own rules first)
            check_member(f"workflow {self.name!r}", name, None, 0, None)
        node_id = check_node_id(id if id is not None else self._free_id(name))
        if node_id in self.nodes:
            raise WorkflowError(f"node {node_id!r} is already in workflow {self.name!r}")
        values, priority = check_member(f"node {node_id!r}", name, args, priority, retry)
        deps = tuple(dict.fromkeys(str(a) for a in self._refs(node_id, after)))
        node = Node(
            node_id,
            name,
            values,
            deps,
            check_policy(on_dependency_failure),
            priority,
            retry,
            check_node_partition(node_id, partition),
        )
        self.nodes[node_id] = node
        return node

    def on_success(
        self,
        name: str,
        args: Mapping[str, Any] | None = None,
        *,
        priority: int = 0,
        retry: RetryOptions | None = None,
        **unsupported: Never,
    ) -> None:
        """Enqueue this job once, when every member has ended and the run succeeded. Another
        keyword argument (``delay``, ``dedup``, ...) raises ``WorkflowError``."""
        refuse_unsupported(f"Workflow.on_success({name!r})", unsupported, CALLBACK_ACCEPTS)
        values, priority = check_member("on_success", name, args, priority, retry)
        self.callbacks["on_success"] = Callback("on_success", name, values, priority, retry)

    def on_failure(
        self,
        name: str,
        args: Mapping[str, Any] | None = None,
        *,
        priority: int = 0,
        retry: RetryOptions | None = None,
        **unsupported: Never,
    ) -> None:
        """Enqueue this job once, when every member has ended and the run failed. Another
        keyword argument (``delay``, ``dedup``, ...) raises ``WorkflowError``."""
        refuse_unsupported(f"Workflow.on_failure({name!r})", unsupported, CALLBACK_ACCEPTS)
        values, priority = check_member("on_failure", name, args, priority, retry)
        self.callbacks["on_failure"] = Callback("on_failure", name, values, priority, retry)

    def _free_id(self, name: str) -> str:
        if name not in self.nodes:
            return name
        i = 2
        while f"{name}#{i}" in self.nodes:
            i += 1
        return f"{name}#{i}"

    def ordered(self) -> list[Node]:
        """The nodes, dependencies first; raises ``WorkflowError`` on an unknown node or a
        cycle (naming it)."""
        return topological(self.nodes)

    def edges(self) -> list[tuple[str, str]]:
        """(parent, child) pairs."""
        return [(p, n.id) for n in self.nodes.values() for p in n.after]

    def _refs(self, node_id: str, after: object) -> list[NodeRef]:
        """``after`` as a list of nodes or node ids (a Node of another workflow refused: it
        bound silently to this one's node of the same id)."""
        refs = node_refs(node_id, "after", after)
        for ref in refs:
            if isinstance(ref, Node) and self.nodes.get(ref.id) != ref:
                raise WorkflowError(f"node {node_id!r}: after names a node of another workflow")
        return refs


def check_nodes(nodes: object) -> None:
    """``nodes`` (``Workflow(nodes=...)``, or changed by hand since) as ``wf.add`` leaves them:
    a dict of ``Node``s, each under its own id, waiting for a tuple of node ids; a
    ``WorkflowError`` naming the node otherwise (was a KeyError, or "min() arg is an empty
    sequence", from the ordering)."""
    if not isinstance(nodes, Mapping):
        raise WorkflowError(f"a workflow's nodes must be a dict of node id -> Node, got {nodes!r}")
    for key, node in nodes.items():
        if not isinstance(node, Node):
            raise WorkflowError(f"node {key!r}: a workflow's nodes must be Nodes, got {node!r}")
        if key != node.id:
            raise WorkflowError(
                f"node {node.id!r} is under the key {key!r} of the workflow's nodes: key each "
                "node by its id (or add it with Workflow.add)"
            )
        check_node_id(node.id)
        after = node.after
        if not isinstance(after, tuple | list) or not all(isinstance(d, str) for d in after):
            raise WorkflowError(
                f"node {node.id!r}: its after must be a tuple of node ids, got {after!r}"
            )


def topological(nodes: Mapping[str, Node]) -> list[Node]:
    """Kahn's order of ``nodes``; a ``WorkflowError`` names an unknown dependency or a cycle,
    or nodes not as ``Workflow.add`` leaves them (check_nodes)."""
    check_nodes(nodes)
    for node in nodes.values():
        for dep in node.after:
            if dep not in nodes:
                raise WorkflowError(f"node {node.id!r} depends on unknown node {dep!r}")
            if dep == node.id:
                raise WorkflowError(f"node {node.id!r} depends on itself")
    waiting = {n.id: len(n.after) for n in nodes.values()}
    children: dict[str, list[str]] = {n: [] for n in nodes}
    for node in nodes.values():
        for dep in node.after:
            children[dep].append(node.id)
    ready = [n for n, count in waiting.items() if count == 0]
    order: list[Node] = []
    while ready:
        current = ready.pop()
        order.append(nodes[current])
        for child in children[current]:
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
    if len(order) < len(nodes):
        raise WorkflowError(f"workflow has a cycle: {' -> '.join(_cycle(nodes, waiting))}")
    return order


def _cycle(nodes: Mapping[str, Node], waiting: Mapping[str, int]) -> list[str]:
    """One cycle among the nodes left over by Kahn's algorithm (each has a dependency left)."""
    left = {n for n, count in waiting.items() if count > 0}
    current = min(left)
    seen: list[str] = []
    while current not in seen:
        seen.append(current)
        current = next(d for d in nodes[current].after if d in left)
    cycle = seen[seen.index(current) :]
    return list(reversed([*cycle, current]))
