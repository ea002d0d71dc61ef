"""lib/workflows.lua: a released member whose queue holds another type is parked in the dead set
as a queued member is stored (priority, partition, name), and wakes no pool; a node id the work
list could not be parsed back from is refused before anything is stored."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from errands import Enqueuer, Workflow
from errands.store.keys import Keys
from errands.store.scripts import Scripts
from errands.workflows.run import WorkflowRun
from errands.workflows.store import Member, WorkflowScripts
from tests.store.test_scripts_args import SPEC
from tests.support.resend import refused


async def parked(redis: Redis, namespace: str) -> tuple[Keys, str]:
    """Run ``w1``: ``a -> b`` (b of ``other``, priority 5, partition ``k1``), the queue of
    ``other`` of another type and a pool idle for ``other``; a cancelled: b parked."""
    keys = Keys(namespace)
    wf = Workflow("chain", id="w1")
    a = wf.add("work", {}, id="a")
    wf.add("other", {}, id="b", after=[a], on_dependency_failure="continue", priority=5,
           partition="k1")  # fmt: skip
    run = await Enqueuer(redis, namespace=namespace, strict=None).enqueue_workflow(wf)
    await redis.set(keys.queue("other"), "x")
    await redis.zadd(keys.idle_for("other"), {"pX": -(10**13)})  # idle until far away
    assert await Scripts(redis, keys).cancel(run.job_id("a"), "work", 1, 60_000) == "cancelled"
    b = run.job_id("b")
    assert await redis.zscore(keys.dead, b) is not None
    return keys, b


async def test_a_parked_member_keeps_its_priority_partition_and_name(
    redis: Redis, namespace: str
) -> None:
    """The park stored the envelope and the error only: retried from the dead set once the key
    was repaired, the member ran at priority 0, outside its partition."""
    keys, b = await parked(redis, namespace)
    assert await redis.hget(keys.priorities, b) == b"5"
    assert await redis.hget(keys.partitions, b) == b"k1"
    assert await redis.sismember(keys.names, "other")
    await redis.delete(keys.queue("other"))  # repaired
    assert await Scripts(redis, keys).move(b, "other", keys.dead, "queue", now_ms=1) == 1
    assert await redis.zscore(keys.queue("other"), b) is not None
    assert await redis.zcard(keys.partition_queue("other")) == 1


async def test_a_parked_member_wakes_no_pool(redis: Redis, namespace: str) -> None:
    """wf_release reported the parked member as released: a pool idle for its name was woken
    (its registration popped) for a job that is in no queue."""
    keys, _b = await parked(redis, namespace)
    assert await redis.zscore(keys.idle_for("other"), "pX") is not None


@pytest.mark.parametrize("node", ["a b", "a\tb", "a<b", ""])
async def test_a_node_id_the_work_list_cannot_hold_is_refused(
    redis: Redis, namespace: str, node: str
) -> None:
    """A node id is written into work list items "<status> <node> <cursor> <run>" read back at
    spaces: "a b" was stored (sent by another client than errands' own, which checks ids), and
    a walk of its dependents left on the list would be read as one of the run " w1" and
    dropped, its dependents waiting for ever."""
    keys = Keys(namespace)
    wf = WorkflowScripts(redis, keys)
    member = Member(node, "job", True, 0, b"{}", SPEC)
    await refused(redis, namespace, wf.enqueue("r1", "flow", 0, [member], [], []), "node id")
    assert await wf.enqueue("r1", "flow", 0, [Member("a", "job", True, 0, b"{}", SPEC)], [], [])
    await refused(redis, namespace, wf.add("r1", member, [], []), "errands: wf_add: node id")


async def test_a_parked_member_holds_a_cancelled_run_until_deleted(
    redis: Redis, namespace: str
) -> None:
    """docs/workflows.md's limit: cancel does not end a parked member (it is in the dead set,
    not ended), so the run stays running until an admin deletes it from there (or retries it)."""
    keys, b = await parked(redis, namespace)
    run = WorkflowRun(redis, keys, "w1")
    with pytest.raises(ResponseError, match="holds another type"):
        await run.cancel()  # (b's cancel refused while its queue holds another type)
    await redis.delete(keys.queue("other"))  # repaired
    assert await run.cancel()
    assert (await run.status()).status == "running"
    assert await Scripts(redis, keys).cancel(b, "other", 1, 60_000) == "dead"
    assert await Scripts(redis, keys).move(b, "other", keys.dead, "delete", now_ms=1) == 1
    status = await run.status()
    assert status.status == "cancelled" and status.nodes["b"].state == "cancelled"
