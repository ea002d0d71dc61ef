"""The workflow scripts called directly: they validate before the first write, and a re-sent
call (redis-py retries after a timeout) leaves the same state and gives the same answer."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from errands.store.keys import Keys
from errands.workflows.store import Member, WorkflowScripts


def member(node: str, *, ready: bool, priority: Any = 0, after: tuple[str, ...] = ()) -> Member:
    deps = ",".join(f'"{d}"' for d in after)
    spec = f'{{"n":"work","f":"fail","p":0,"d":[{deps}]}}'.encode()
    return Member(node, "work", ready, priority, b'{"id":"' + node.encode() + b'"}', spec)


async def namespace_keys(redis: Redis, keys: Keys) -> list[bytes]:
    return sorted([k async for k in redis.scan_iter(match=keys.prefix + "*")])


@pytest.mark.parametrize("priority", ["high", ""])
async def test_enqueue_with_a_priority_not_a_number_writes_nothing(
    redis: Redis, namespace: str, priority: str
) -> None:
    """A priority that is not a number used to fail in the HSET of the priorities after the
    run and its first members were written: half a run, never finished."""
    keys = Keys(namespace)
    scripts = WorkflowScripts(redis, keys)
    members = [member("a", ready=True), member("b", ready=True, priority=priority)]
    with pytest.raises(ResponseError, match="priority"):
        await scripts.enqueue("r1", "wf", 60_000, members, [], [])
    assert await namespace_keys(redis, keys) == []


async def test_add_with_a_priority_not_a_number_writes_nothing(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    scripts = WorkflowScripts(redis, keys)
    assert await scripts.enqueue("r1", "wf", 60_000, [member("a", ready=True)], [], [])
    before = {k: await redis.dump(k) for k in await namespace_keys(redis, keys)}
    with pytest.raises(ResponseError, match="priority"):
        await scripts.add("r1", member("x", ready=False, priority="high"), [], [])
    assert {k: await redis.dump(k) for k in await namespace_keys(redis, keys)} == before


async def dump_all(redis: Redis, keys: Keys) -> dict[bytes, Any]:
    return {k: await redis.dump(k) for k in await namespace_keys(redis, keys)}


async def test_a_resent_add_gives_the_same_answer_and_changes_nothing(
    redis: Redis, namespace: str
) -> None:
    """The second send of an add that went through used to answer 'node x is already in the
    workflow', which WorkflowRun.add raised as a WorkflowError."""
    keys = Keys(namespace)
    scripts = WorkflowScripts(redis, keys)
    members = [member("a", ready=True), member("m", ready=False, after=("a",))]
    assert await scripts.enqueue("r1", "wf", 60_000, members, [("a", "m")], [])
    x = member("x", ready=False, after=("a",))
    assert await scripts.add("r1", x, ["a"], ["m"]) == ""
    state = await dump_all(redis, keys)
    assert await scripts.add("r1", x, ["a"], ["m"]) == ""  # the re-send
    assert await dump_all(redis, keys) == state
    # x's own dependencies grew since (y added before it): still the same add
    assert await scripts.add("r1", member("y", ready=False), [], ["x"]) == ""
    assert await scripts.add("r1", x, ["a"], ["m"]) == ""
    # another definition under the same id is refused, as before
    other = member("x", ready=False, after=("a",))
    other = Member("x", "work", False, 0, other.envelope, other.spec.replace(b"fail", b"ignore"))
    assert "already in the workflow" in await scripts.add("r1", other, ["a"], ["m"])
    assert "already in the workflow" in await scripts.add(
        "r1", member("x", ready=False, after=("m",)), ["m"], []
    )
    assert await scripts.add("r1", x, ["a"], []) == ""  # what it asks for holds
    assert "already in the workflow" in await scripts.add("r1", x, ["a"], ["y"])
