"""wf_enqueue.lua and wf_add.lua refuse a member's spec without its job name ("n"), before any
write: the spec was stored, and the script ending the member's last dependency (an ack, a
cancel) read its name as nil and raised after its first write (half done)."""

from __future__ import annotations

from redis.asyncio import Redis

from errands.store.keys import Keys
from errands.workflows.store import Member, WorkflowScripts
from tests.store.test_scripts_args import SPEC
from tests.support.resend import refused

NAMELESS = b'{"f":"continue","p":0,"d":["a"]}'


async def test_a_spec_without_its_job_name_is_refused(redis: Redis, namespace: str) -> None:
    wf = WorkflowScripts(redis, Keys(namespace))
    a = Member("a", "job", True, 0, b"{}", SPEC)
    b = Member("b", "job", False, 0, b"{}", NAMELESS)
    await refused(redis, namespace, wf.enqueue("r1", "flow", 0, [a, b], [("a", "b")], []), "name")
    assert await wf.enqueue("r1", "flow", 0, [a], [], [])
    await refused(redis, namespace, wf.add("r1", b, ["a"], []), "name")
