"""A job stored by a caller-given id never takes a workflow member's or callback's id: the id
"<run>.<node>" (or "<run>!on_success" / "<run>!on_failure") is taken while run <run> is
stored, whatever its member's state, as an id held by a stored or recently ended job is
(enqueue, enqueue_many, enqueue_unique, a dedup enqueue: the job is not stored, `existed`).
Without it, a plain job given the id of a member still waiting for its dependencies was
stored and ran; its end was taken for the member's (recorded as its result, releasing its
dependents), and the member itself never ran. Conversely, a member added to a running run
(wf_add) whose job id is taken is refused, as wf_enqueue refuses a run."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from errands import Dedup, Job, Workflow, WorkflowError
from errands.store.scripts import Scripts
from errands.workflows import WorkflowRun
from tests.support.invariants import assert_invariants
from tests.support.resend import Recorder, refused, snapshot

from .conftest import Env

Intrude = Callable[[Env, str], Awaitable[Job | None]]
INTRUDER = {"value": "intruder"}


async def plain(env: Env, job_id: str) -> Job | None:
    return await env.enqueuer.enqueue("work", INTRUDER, job_id=job_id)


async def many(env: Env, job_id: str) -> Job | None:
    jobs = await env.enqueuer.enqueue_many(
        [("work", {"value": "other"}), ("work", INTRUDER, {"job_id": job_id})]
    )
    assert not jobs[0].existed
    return jobs[1]


async def unique(env: Env, job_id: str) -> Job | None:
    return await env.enqueuer.enqueue_unique("work", INTRUDER, job_id=job_id)


async def dedup(env: Env, job_id: str) -> Job | None:
    return await env.enqueuer.enqueue("work", INTRUDER, job_id=job_id, dedup=Dedup("k"))


PATHS = [plain, many, unique, dedup]


def chain() -> Workflow:
    wf = Workflow("chain")
    a = wf.add("work", {"value": "a"}, id="a")
    wf.add("work", {"value": "b"}, id="b", after=[a])
    wf.on_success("notify", {"outcome": "ok"})
    return wf


async def finished(env: Env, run: WorkflowRun) -> None:
    await env.pool.drain(timeout=20)
    status = await run.wait(timeout=5)
    assert status.status == "succeeded"
    assert INTRUDER not in [args for _name, args in env.ran]
    await assert_invariants(env.redis, env.namespace, drained=True)


@pytest.mark.parametrize("intrude", PATHS)
async def test_a_waiting_members_id_is_taken(env: Env, intrude: Intrude) -> None:
    run = await env.enqueuer.enqueue_workflow(chain())
    job = await intrude(env, run.job_id("b"))  # b waits for a: not in `jobs` yet
    assert job is not None and job.existed
    await finished(env, run)
    assert [a["value"] for n, a in env.ran if n == "work" and a["value"] != "other"] == ["a", "b"]
    assert await run.results() == {"a": "a", "b": "b"}


@pytest.mark.parametrize("intrude", PATHS)
async def test_a_callbacks_id_is_taken_before_it_is_enqueued(env: Env, intrude: Intrude) -> None:
    run = await env.enqueuer.enqueue_workflow(chain())
    job = await intrude(env, f"{run.id}!on_success")
    assert job is not None and job.existed
    await finished(env, run)
    assert [a for n, a in env.ran if n == "notify"] == [{"outcome": "ok"}]


@pytest.mark.parametrize("intrude", PATHS)
async def test_a_queued_members_id_is_taken(env: Env, intrude: Intrude) -> None:
    run = await env.enqueuer.enqueue_workflow(chain())
    job = await intrude(env, run.job_id("a"))
    assert job is not None and job.existed
    await finished(env, run)


@pytest.mark.parametrize("intrude", PATHS)
async def test_a_running_members_id_is_taken(env: Env, intrude: Intrude) -> None:
    run = await env.enqueuer.enqueue_workflow(chain())
    scripts = Scripts(env.redis, env.keys)
    now = await scripts.heartbeat("p", b"{}", 60_000, "register")
    assert [f.id for f in await scripts.fetch("p", now, 10, [("work", 0)])] == [run.job_id("a")]
    job = await intrude(env, run.job_id("a"))
    assert job is not None and job.existed


@pytest.mark.parametrize("intrude", PATHS)
async def test_an_ended_members_id_is_taken_while_its_run_is_stored(
    env: Env, intrude: Intrude
) -> None:
    """Its tombstone gone (the latest 100,000 ended jobs are kept: more ended since), its run
    still lingering: the id is still taken."""
    run = await env.enqueuer.enqueue_workflow(chain())
    await finished(env, run)
    ids = [run.job_id("a"), run.job_id("b"), f"{run.id}!on_success"]
    await env.redis.zrem(env.keys.ended, *ids)
    await env.redis.delete(*(env.keys.done(i) for i in ids))
    for job_id in ids:
        job = await intrude(env, job_id)
        assert job is not None and job.existed, job_id
    assert not await env.redis.hexists(env.keys.jobs, run.job_id("a"))


async def test_a_dotted_id_outside_any_run_is_stored(env: Env) -> None:
    """Ids shaped like a member's but of no stored run: stored as any other."""
    run = await env.enqueuer.enqueue_workflow(chain())
    for job_id in [f"{run.id}.zz", f"{run.id}x.b", "no.such.run", f"{run.id}!on_failure!x"]:
        job = await plain(env, job_id)
        assert job is not None and not job.existed, job_id
    await env.pool.drain(timeout=20)
    assert (await run.wait(timeout=5)).status == "succeeded"


async def test_wf_add_refuses_a_member_whose_job_id_is_taken(env: Env) -> None:
    run = await env.enqueuer.enqueue_workflow(chain())
    job = await plain(env, run.job_id("c"))
    assert job is not None and not job.existed
    with pytest.raises(WorkflowError, match="taken"):
        await run.add("work", {"value": "c"}, id="c", before=["b"])
    envelope: Any = await env.redis.hget(env.keys.jobs, run.job_id("c"))
    assert b"intruder" in envelope
    await env.pool.drain(timeout=20)
    assert (await run.wait(timeout=5)).status == "succeeded"
    assert sorted(a["value"] for n, a in env.ran if n == "work") == ["a", "b", "intruder"]


async def test_a_resend_of_a_refused_enqueue_answers_the_same_and_writes_nothing(env: Env) -> None:
    """Each script's call refused for a waiting member's id, sent again (redis-py, after a lost
    reply): the same answer, no key changed (the no-op HDEL of lib/types.lua's unwritten)."""
    run = await env.enqueuer.enqueue_workflow(chain())
    scripts = Scripts(env.redis, env.keys)
    recs = {}
    for name in ("enqueue", "enqueue_unique", "enqueue_dedup"):
        recs[name] = scripts._s[name] = Recorder(scripts._s[name])  # type: ignore[assignment]
    member = run.job_id("b")
    assert await scripts.enqueue(["work"], [[1, "work", member, b"{}", 0, 0, ""]]) == [0]
    assert await scripts.enqueue_unique("work", member, b"{}", 0, 0, "d", 10**13, 1) == (
        True, member, True)  # fmt: skip
    assert (await scripts.enqueue_dedup("work", member, b"{}", 0, 0, "s", "k", 0))[0] == "existed"
    before = await snapshot(env.redis, env.namespace)
    for rec in recs.values():
        assert await rec.resend() == rec.reply
    assert await snapshot(env.redis, env.namespace) == before


async def test_workflows_of_another_type_refuse_a_dotted_id_only(env: Env) -> None:
    await env.redis.set(env.keys.workflows, "x")
    call = env.enqueuer.enqueue("work", {}, job_id="order.7")
    await refused(env.redis, env.namespace, call, "WRONGTYPE .*wfidx")
    job = await env.enqueuer.enqueue("work", {})  # (a random id: workflows not read)
    assert job is not None and not job.existed


async def test_a_resent_add_of_a_ready_member_answers_added(env: Env) -> None:
    """wf_add checks its job id after the node: its own re-send (the member queued by the first
    send, its id in `jobs`) still answers '' (added), not taken."""
    run = await env.enqueuer.enqueue_workflow(chain())
    rec = Recorder(run._scripts._s["wf_add"])
    run._scripts._s["wf_add"] = rec  # type: ignore[assignment]
    await run.add("work", {"value": "c"}, id="c")
    assert await env.redis.hexists(env.keys.jobs, run.job_id("c"))
    before = await snapshot(env.redis, env.namespace)
    assert await rec.resend() == b""
    assert await snapshot(env.redis, env.namespace) == before


def sharing(run_id: str, node: str) -> Workflow:
    """A run whose member `node` waits for `x`."""
    wf = Workflow("sharing", id=run_id)
    wf.add("work", {"value": node}, id=node, after=[wf.add("work", {"value": "x"}, id="x")])
    return wf


async def test_a_run_sharing_a_waiting_members_id_with_another_is_refused(env: Env) -> None:
    """Run ids sharing a prefix: run `a` node `b.c` and run `a.b` node `c` are both `a.b.c`."""
    first = await env.enqueuer.enqueue_workflow(sharing("a", "b.c"))
    second = await env.enqueuer.enqueue_workflow(sharing("a.b", "c"))
    assert not first.existed and second.existed
    late = Workflow("late", id="a.b")
    late.add("work", {"value": "x"}, id="x")
    run = await env.enqueuer.enqueue_workflow(late)  # (no shared id: stored)
    assert not run.existed
    with pytest.raises(WorkflowError, match="another workflow run"):
        await run.add("work", {"value": "c"}, id="c")
    await env.pool.drain(timeout=20)
    assert (await first.wait(timeout=5)).status == "succeeded"
    assert sorted(a["value"] for _n, a in env.ran) == ["b.c", "x", "x"]
