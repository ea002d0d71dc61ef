"""More keys of another type that raised after a script's first write, found by spoiling each
declared key of a call in turn: wf_add.lua had no key-type pass (its run's open set, edges or
envelopes of another type raised after the member's membership and spec were written: half
added; the namespace's keys a ready member goes to were not looked at either), wf_cancel.lua
did not check workflow_of (noted its reply and marked the run cancelled, then raised ending a
waiting member: its re-send answered 1, the member never ended). reap.lua asked dedup_of_job's
HLEN before its type pass (Redis' own WRONGTYPE, before any write). Each is refused by name now,
nothing written."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from errands.store.keys import Keys
from errands.store.scripts import Scripts
from errands.workflows.store import WorkflowScripts
from tests.store.test_script_guards import a_chain
from tests.support.deadpool import dead_pool_row
from tests.support.resend import snapshot
from tests.workflows.test_scripts import member

ADDS = {"ready": ((), ()), "after": (("a",), ()), "before": ((), ("b",))}


@pytest.mark.parametrize("part", ["open", "in", "out", "env", "jobs", "workflow_of", "size"])
@pytest.mark.parametrize("add", sorted(ADDS))
async def test_a_workflow_add_meeting_a_bad_key_adds_nothing(
    redis: Redis, namespace: str, add: str, part: str
) -> None:
    keys = Keys(namespace)
    await a_chain(redis, namespace)
    if part == "size":
        await redis.hset(keys.workflow("w1"), "size", "x")
    else:
        key = getattr(keys, part) if part in ("jobs", "workflow_of") else keys.workflow("w1", part)
        await redis.delete(key)
        await redis.set(key, "x")
    before = await snapshot(redis, namespace)
    after, then = ADDS[add]
    x = member("x", ready=not after, after=after)
    with pytest.raises(ResponseError, match="node x was not added"):
        await WorkflowScripts(redis, keys).add("w1", x, list(after), list(then))
    assert await snapshot(redis, namespace) == before


async def test_a_workflow_cancel_meeting_a_workflow_of_of_another_type_cancels_nothing(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    await a_chain(redis, namespace)
    await redis.delete(keys.workflow_of)
    await redis.set(keys.workflow_of, "x")
    before = await snapshot(redis, namespace)
    with pytest.raises(
        ResponseError, match=r"WRONGTYPE .*wfof holds another type: nothing cancelled"
    ):
        await WorkflowScripts(redis, keys).cancel("w1", ["b"], "c1")
    assert await snapshot(redis, namespace) == before


async def test_a_reap_meeting_a_dedup_of_job_of_another_type_is_refused_by_name(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    row = await dead_pool_row(redis, namespace, scripts)
    await redis.set(keys.dedup_of_job, "x")
    before = await snapshot(redis, namespace)
    with pytest.raises(ResponseError, match=r"WRONGTYPE .*dedupjob holds another type: nothing"):
        await scripts.reap("dead", 60_000, 1, b'"lost"', b'"malformed"', [row])
    assert await snapshot(redis, namespace) == before
