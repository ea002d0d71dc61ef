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
    """Every key of the namespace with its content (DUMP of a large hash varies in order), but
    the reply keys of calls (each call its own, see wf_cancel.lua)."""
    out: dict[bytes, Any] = {}
    for k in await namespace_keys(redis, keys):
        if k.startswith(keys.prefix.encode() + b"reply:"):
            continue
        kind = (await redis.type(k)).decode()
        if kind == "hash":
            out[k] = await redis.hgetall(k)
        elif kind == "zset":
            out[k] = await redis.zrange(k, 0, -1, withscores=True)
        elif kind == "set":
            out[k] = await redis.smembers(k)
        else:
            out[k] = await redis.dump(k)
        out[k + b" ttl"] = await redis.pttl(k)
    return out


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


async def test_an_add_closing_an_indirect_cycle_is_refused_before_any_write(
    redis: Redis, namespace: str
) -> None:
    """s -> a -> b, add x after b and before a: a waits for x, x for b, b for a. It used to be
    accepted, and the run never finished."""
    keys = Keys(namespace)
    scripts = WorkflowScripts(redis, keys)
    members = [
        member("s", ready=True),
        member("a", ready=False, after=("s",)),
        member("b", ready=False, after=("a",)),
    ]
    assert await scripts.enqueue("r1", "wf", 60_000, members, [("s", "a"), ("a", "b")], [])
    state = await dump_all(redis, keys)
    x = member("x", ready=False, after=("b",))
    why = await scripts.add("r1", x, ["b"], ["a"])
    assert why == "adding node x would close a cycle: x -> a -> b -> x"
    assert await dump_all(redis, keys) == state
    y = member("y", ready=False, after=("s",))  # after s, before b: no cycle
    assert await scripts.add("r1", y, ["s"], ["b"]) == ""


async def test_the_cycle_check_is_bounded(redis: Redis, namespace: str) -> None:
    """More than 10,000 edges upstream of the after nodes: refused, with why."""
    keys = Keys(namespace)
    scripts = WorkflowScripts(redis, keys)
    roots = [f"p{i}" for i in range(10_001)]
    members = [member(r, ready=True) for r in roots]
    members += [
        member("m", ready=False, after=tuple(roots)),
        member("z", ready=False, after=("m",)),
    ]
    edges = [(r, "m") for r in roots] + [("m", "z")]
    assert await scripts.enqueue("r1", "wf", 60_000, members, edges, [])
    state = await dump_all(redis, keys)
    why = await scripts.add("r1", member("x", ready=False, after=("m",)), ["m"], ["z"])
    assert why.startswith("cannot check that adding node x closes no cycle: more than 10000")
    assert await dump_all(redis, keys) == state
    assert await scripts.add("r1", member("x", ready=False), [], ["z"]) == ""  # nothing to check


async def test_cancel_ends_waiting_members_only(redis: Redis, namespace: str) -> None:
    """wf_cancel given a member no longer waiting (released: queued) or a callback: nothing of
    it changes. Its end used to be handled on the membership alone: the queued job was
    recorded cancelled, and the run finished while the job still waited on its queue."""
    keys = Keys(namespace)
    scripts = WorkflowScripts(redis, keys)
    members = [member("a", ready=True), member("b", ready=False, after=("a",))]
    callback = ("on_success", b'{"id":"cb"}', b'{"n":"work","p":0}')
    assert await scripts.enqueue("r1", "wf", 60_000, members, [("a", "b")], [callback])
    assert await scripts.cancel("r1", [])  # marks the run cancelled
    state = await dump_all(redis, keys)
    assert await scripts.cancel("r1", ["a", "!on_success"])
    assert await dump_all(redis, keys) == state
    assert await redis.hget(keys.workflow_of, "r1.a") == b"r1"
    assert await scripts.cancel("r1", ["b"])  # b waits: ended, and its edge goes
    assert await redis.smembers(keys.workflow("r1", "open")) == {b"a"}
    assert await redis.zcard(keys.workflow("r1", "in")) == 0
    state = await dump_all(redis, keys)
    assert await scripts.cancel("r1", ["b"])  # the re-send
    assert await dump_all(redis, keys) == state
