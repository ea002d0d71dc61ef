"""wf_enqueue.lua re-sent (redis-py sends a script call again when the reply to the first send
is lost) once the run has ended and its linger is over (1 ms at least): its only check was the
run's hash, gone by then, so the re-send stored the whole run again and every member and the
callback ran a second time. It now answers as for a run stored while a member's or callback's
job id is taken (stored, its tombstone in `ended`, its result record), as enqueue.lua does."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis

from errands import Workflow, WorkflowNotFoundError
from errands.store.keys import Keys
from errands.store.scripts import Acked, Scripts
from errands.workflows import enqueue as enqueue_module
from errands.workflows.store import Member, WorkflowScripts, run_keys
from tests.support.invariants import assert_invariants
from tests.support.resend import Recorder, snapshot
from tests.workflows.conftest import Env

SPEC = b'{"n":"work","f":"fail","p":0,"d":[]}'
CALLBACK = ("on_success", b'{"id":"cb"}', b'{"n":"notify","p":0}')


def recorded(scripts: WorkflowScripts) -> Recorder:
    rec = Recorder(scripts._s["wf_enqueue"])
    scripts._s["wf_enqueue"] = rec
    return rec


async def lingered_out(redis: Redis, keys: Keys, run: str) -> None:
    """Wait (a condition, not a time) until every key of the run has expired."""
    async with asyncio.timeout(5):
        while await redis.exists(*run_keys(keys, run)):
            await asyncio.sleep(0.005)


async def run_all(redis: Redis, keys: Keys, ttl_ms: int) -> list[str]:
    """Fetch and acknowledge every ready job of `work` and `notify` (result records kept
    `ttl_ms`: 0 leaves a tombstone in `ended`, an hour or more a result record instead)."""
    scripts = Scripts(redis, keys)
    ran: list[str] = []
    while True:
        now = await scripts.heartbeat("p", b"{}", 60_000, "register")
        got = await scripts.fetch("p", now, 10, [("work", 0), ("notify", 0)])
        if not got:
            return ran
        name = {f.id: "notify" if "!" in f.id else "work" for f in got}
        done = [Acked(f.id, name[f.id], b"1", now, ttl_ms, 1, f.token) for f in got]
        assert await scripts.ack("p", done, False, now, False) == []
        ran += [f.id for f in got]


@pytest.mark.parametrize("ttl_ms", [0, 86_400_000], ids=["tombstone", "result-record"])
async def test_a_resend_after_the_linger_stores_nothing(
    redis: Redis, namespace: str, ttl_ms: int
) -> None:
    keys = Keys(namespace)
    scripts = WorkflowScripts(redis, keys)
    rec = recorded(scripts)
    members = [Member("a", "work", True, 0, b'{"id":"a"}', SPEC)]
    assert await scripts.enqueue("r1", "wf", 1, members, [], [CALLBACK])
    assert await run_all(redis, keys, ttl_ms) == ["r1.a", "r1!on_success"]
    await lingered_out(redis, keys, "r1")
    before = await snapshot(redis, namespace)
    assert await rec.resend(0) == 0  # as for a run stored
    assert await snapshot(redis, namespace) == before
    assert await run_all(redis, keys, ttl_ms) == []
    await assert_invariants(redis, namespace, drained=True)


async def test_a_run_of_callbacks_only_resent_stores_nothing(redis: Redis, namespace: str) -> None:
    """No member: its on_success is enqueued when it is stored; its job id blocks the re-send."""
    keys = Keys(namespace)
    scripts = WorkflowScripts(redis, keys)
    rec = recorded(scripts)
    assert await scripts.enqueue("r1", "wf", 1, [], [], [CALLBACK])
    assert await run_all(redis, keys, 0) == ["r1!on_success"]
    await lingered_out(redis, keys, "r1")
    assert await rec.resend(0) == 0
    assert await run_all(redis, keys, 0) == []


async def test_the_id_is_free_again_once_its_jobs_are_forgotten(
    redis: Redis, namespace: str
) -> None:
    """The same run id enqueued on purpose later is stored and runs again once no job id of it
    is taken: its tombstones and result records gone (removed here as their trim and expiry
    would), as a job id is free again (docs/workflows.md)."""
    keys = Keys(namespace)
    scripts = WorkflowScripts(redis, keys)
    rec = recorded(scripts)
    members = [Member("a", "work", True, 0, b'{"id":"a"}', SPEC)]
    assert await scripts.enqueue("r1", "wf", 1, members, [], [CALLBACK])
    assert await run_all(redis, keys, 0) == ["r1.a", "r1!on_success"]
    await lingered_out(redis, keys, "r1")
    assert await rec.resend(0) == 0
    assert await redis.zrem(keys.ended, "r1!on_success") == 1  # a's tombstone still blocks it
    assert await rec.resend(0) == 0
    assert await redis.zrem(keys.ended, "r1.a") == 1
    assert await rec.resend(0) == 1
    assert await run_all(redis, keys, 0) == ["r1.a", "r1!on_success"]


async def test_a_dead_member_blocks_the_resend(env: Env, monkeypatch: Any) -> None:
    """Through a pool: a member died (its envelope kept with the dead set), the run failed, its
    linger is over. The re-send stored the member again beside its dead entry and queued it."""
    recs: list[Recorder] = []

    class Recording(WorkflowScripts):
        def __init__(self, redis: Any, keys: Keys) -> None:
            super().__init__(redis, keys)
            recs.append(recorded(self))

    monkeypatch.setattr(enqueue_module, "WorkflowScripts", Recording)
    wf = Workflow("dies", id="r1", linger=0.001)
    wf.add("work", {"fail": True}, id="a")
    wf.on_failure("notify", {})
    assert not (await env.enqueuer.enqueue_workflow(wf)).existed
    await env.pool.drain(timeout=20)
    await lingered_out(env.redis, env.keys, "r1")
    assert env.names() == ["work", "notify"]  # failed: on_failure
    assert await env.redis.zscore(env.keys.dead, "r1.a") is not None
    before = await snapshot(env.redis, env.namespace)
    assert await recs[0].resend() == 0
    assert await snapshot(env.redis, env.namespace) == before
    # the same run enqueued again on purpose: stored nothing, and says so
    again = await env.enqueuer.enqueue_workflow(wf)
    assert again.existed
    assert await snapshot(env.redis, env.namespace) == before
    with pytest.raises(WorkflowNotFoundError):
        await again.status()
    await env.pool.drain(timeout=20)
    assert env.names() == ["work", "notify"]
    await assert_invariants(env.redis, env.namespace, drained=True)
