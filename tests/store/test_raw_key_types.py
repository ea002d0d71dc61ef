"""Scripts that met a key of another type with Redis' own WRONGTYPE ("Operation against a key
holding the wrong kind of value", naming no key) before their first write: checkin.lua (the
attempts' or the jobs' read, the checkins' HSET), heartbeat.lua (the registry's or the retired
set's ZSCORE, the registry's ZADD), request_cancel.lua (the attempts' read, the requests' HSET),
wf_cancel.lua (its read of the run's status) and wf_cascade.lua (its read of the work list).
Each names the key and what was not done now, as the other scripts do (lib/types.lua), and
writes nothing."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from errands.store.keys import Keys
from errands.store.scripts import Scripts
from errands.workflows.run import WorkflowRun
from errands.workflows.store import WorkflowScripts
from tests.store.test_script_guards import a_chain
from tests.support.fetched import POOL, running_job
from tests.support.resend import refused


async def spoil(redis: Redis, key: str) -> None:
    """``key`` becomes a string."""
    await redis.delete(key)
    await redis.set(key, "x")


@pytest.mark.parametrize("family", ["checkins", "jobs", "attempts"])
async def test_a_checkin_meeting_a_key_of_another_type_records_nothing(
    redis: Redis, namespace: str, family: str
) -> None:
    keys, job_id = await running_job(redis, namespace)
    key = getattr(keys, family)
    await spoil(redis, key)
    checkin = Scripts(redis, keys).checkin(job_id, "work", b'{"m":"1 of 2"}', f"{POOL}:1")
    await refused(redis, namespace, checkin, rf"^WRONGTYPE {key} holds another type: no checkin")


@pytest.mark.parametrize("mode", ["register", "renew"])
@pytest.mark.parametrize("family", ["pools", "retired"])
async def test_a_heartbeat_meeting_a_key_of_another_type_records_nothing(
    redis: Redis, namespace: str, family: str, mode: str
) -> None:
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    await scripts.heartbeat("p1", b"{}", 60_000, mode="register")
    key = getattr(keys, family)
    await spoil(redis, key)
    if (family, mode) == ("retired", "renew"):  # (a renewal does not read the retired set)
        assert await scripts.heartbeat("p1", b'{"n":2}', 60_000, mode=mode) > 0
        return
    beat = scripts.heartbeat("p1", b'{"n":2}', 60_000, mode=mode)
    await refused(redis, namespace, beat, rf"^WRONGTYPE {key} holds another type: no beat")


@pytest.mark.parametrize("family", ["attempts", "cancel_requests"])
async def test_a_cancel_request_meeting_a_key_of_another_type_requests_nothing(
    redis: Redis, namespace: str, family: str
) -> None:
    keys, job_id = await running_job(redis, namespace)
    key = getattr(keys, family)
    await spoil(redis, key)
    request = Scripts(redis, keys).request_cancel(job_id, "cancel")
    await refused(redis, namespace, request, rf"^WRONGTYPE {key} holds another type: nothing")


async def test_a_workflow_cancel_meeting_a_run_of_another_type_cancels_nothing(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    await a_chain(redis, namespace)
    key = keys.workflow("w1")
    await spoil(redis, key)
    match = rf"^WRONGTYPE {key} holds another type: nothing cancelled"
    await refused(redis, namespace, WorkflowScripts(redis, keys).cancel("w1", ["b"], "c1"), match)
    await refused(redis, namespace, WorkflowRun(redis, keys, "w1").cancel(), match)


async def test_a_cascade_meeting_a_work_list_of_another_type_walks_nothing(
    redis: Redis, namespace: str
) -> None:
    """The work list of another type raised Redis' own WRONGTYPE. (A run's key of another type
    holds that run only: tests/workflows/test_cascade_held_run.py.)"""
    keys = Keys(namespace)
    await spoil(redis, keys.workflows_work)
    cascade = WorkflowScripts(redis, keys).cascade()
    key = keys.workflows_work
    await refused(redis, namespace, cascade, rf"^WRONGTYPE {key} holds another type: nothing")
