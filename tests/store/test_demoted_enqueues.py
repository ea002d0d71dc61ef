"""A master demoted to a replica keeps its clients connected and, until its resync is done,
answers from its data as it was. An enqueue that found its job there (the id stored or
tombstoned, the unique digest or dedup key held, the workflow run or member stored) answered so
and wrote nothing, so no READONLY came back: a job enqueued just before the failover and not
yet replicated is lost on the new master, and the re-send of its call (redis-py's, after a
timeout, on the same connection) was told it stored. Such an answer now writes nothing first,
which a replica refuses (as ack.lua and settle.lua do: test_demoted_verdicts.py); on a master
the answer is the same and nothing is written (not even to the replication stream).

Each test stores on a master of its own, sends the calls that find what it stored (same
answers, nothing changed), then demotes the node (REPLICAOF a master that is not there: its
data stays as it was) and sends them again: each is refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from errands.store.keys import Keys
from errands.store.scripts import Scripts
from errands.workflows.store import Member, WorkflowScripts
from tests.support.demoted import Call, check
from tests.support.infra.nodes import own_node
from tests.support.resend import snapshot

FAR = 10**12  # a unique lock's expiry (ms) far ahead of the calls' `now` (1)


def _spec(*after: str) -> bytes:
    deps = ",".join(f'"{a}"' for a in after)
    return b'{"n":"work","f":"fail","p":0,"d":[' + deps.encode() + b"]}"


@pytest.fixture
async def master(tmp_path: Path) -> AsyncIterator[Redis]:
    """A master of its own (nothing else writes to it), which the test demotes."""
    async with own_node(tmp_path, "demoted") as client:
        yield client


async def test_an_enqueue_that_finds_its_jobs_there(master: Redis, namespace: str) -> None:
    keys = Keys(namespace)
    s = Scripts(master, keys)
    assert await s.enqueue(["work"], [(1, "work", "j1", b"e1", 0, 0, "")]) == []
    assert await s.enqueue(["work"], [(1, "work", "j4", b"e4", 5, 10**13, "p")]) == []
    await master.zadd(keys.ended, {"j2": 1})  # tombstoned
    await master.set(keys.done("j3"), b"{}")  # its result record kept

    def enqueue(names: list[str], *jobs: tuple[int, str, bytes]) -> Call:
        rows = [(qi, names[qi - 1], id, env, 0, 0, "") for qi, id, env in jobs]
        return lambda: s.enqueue(names, rows)

    w, wo = ["work"], ["work", "other"]
    await check(master, namespace, [
        (enqueue(w, (1, "j1", b"e1")), []),  # a re-send: stored by its first send
        (lambda: s.enqueue(w, [(1, "work", "j4", b"e4", 5, 10**13, "p")]), []),  # (scheduled)
        (enqueue(w, (1, "j1", b"other")), [0]),
        (enqueue(w, (1, "j2", b"e")), [0]),
        (enqueue(w, (1, "j3", b"e")), [0]),
        (enqueue(wo, (1, "j1", b"other"), (2, "j2", b"e"), (2, "j3", b"e")), [0, 1, 2]),
    ])  # fmt: skip


async def test_a_unique_enqueue_that_finds_its_job_or_digest_held(
    master: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    s = Scripts(master, keys)

    def unique(id: str, env: bytes, digest: str = "d1") -> Call:
        return lambda: s.enqueue_unique("work", id, env, 0, 0, digest, FAR, 1)

    assert await unique("u1", b"e1")() == (True, "u1", False)
    assert await unique("u4", b"e4", "d4")() == (True, "u4", False)

    def swap() -> Call:  # (enqueue_unique(key=...)'s new args for u4; the same call re-sent)
        return lambda: s.replace_envelope("d4", "u4", b"e4", b"e5", call="c2")

    assert await swap()() is True
    await master.zadd(keys.ended, {"u3": 1})
    await check(master, namespace, [
        (unique("u1", b"e1"), (True, "u1", False)),  # a re-send
        (swap(), True),  # a re-send: answered from its reply key
        (unique("u1", b"other", "d2"), (True, "u1", True)),
        (unique("u2", b"e2"), (False, "u1", False)),  # the digest held
        (unique("u3", b"e3", "d3"), (True, "u3", True)),
    ])  # fmt: skip


async def test_a_dedup_enqueue_that_finds_its_job_or_key_held(
    master: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    s = Scripts(master, keys)

    def dedup(id: str, env: bytes, mode: str, key: str, window: int = 0, call: str = "") -> Call:
        return lambda: s.enqueue_dedup("work", id, env, 0, 0, mode, key, window, call=call)

    assert await dedup("d1", b"e1", "s", "work:k")() == ("enqueued", "d1", "d1")
    assert await dedup("t1", b"e1", "t", "work:t", 60_000)() == ("enqueued", "t1", "t1")
    assert await dedup("r1", b"e1", "r", "work:r")() == ("enqueued", "r1", "r1")
    await master.hset(keys.dedup_of_job, "r1", "Rwork:r")  # (as started)
    assert await dedup("r2", b"e2", "r", "work:r")() == ("rerun_queued", "r2", "r1")
    # another key's rerun, its args replaced (by a call whose re-send answers from its reply key)
    assert await dedup("q1", b"e1", "r", "work:q")() == ("enqueued", "q1", "q1")
    await master.hset(keys.dedup_of_job, "q1", "Rwork:q")  # (as started)
    assert await dedup("q2", b"e2", "r", "work:q")() == ("rerun_queued", "q2", "q1")
    assert await dedup("q3", b"e3", "r", "work:q", call="c1")() == ("rerun_queued", "q2", "q1")
    await master.zadd(keys.ended, {"d9": 1})
    await check(master, namespace, [
        (dedup("d1", b"e1", "s", "work:k"), ("enqueued", "d1", "d1")),  # a re-send
        (dedup("r2", b"e2", "r", "work:r"), ("rerun_queued", "r2", "r1")),  # a re-send
        (dedup("q3", b"e3", "r", "work:q", call="c1"), ("rerun_queued", "q2", "q1")),  # re-sent
        (dedup("d1", b"other", "s", "work:x"), ("existed", "d1", "")),
        (dedup("d9", b"e9", "s", "work:y"), ("existed", "d9", "")),
        (dedup("d2", b"e2", "s", "work:k"), ("dropped", "d1", "d1")),
        (dedup("d2", b"e2", "f", "work:k"), ("dropped", "d1", "d1")),
        (dedup("t2", b"e2", "t", "work:t", 60_000), ("dropped", "t1", "t1")),
    ])  # fmt: skip


async def test_a_workflow_enqueue_or_add_that_finds_its_run_or_member_stored(
    master: Redis, namespace: str
) -> None:
    wf = WorkflowScripts(master, Keys(namespace))
    a, b = (
        Member("a", "work", True, 0, b"ea", _spec()),
        Member("b", "work", False, 0, b"eb", _spec("a")),
    )

    def run() -> Call:
        return lambda: wf.enqueue("w1", "flow", 60_000, [a], [], [])

    def add(run_id: str, member: Member, *after: str) -> Call:
        return lambda: wf.add(run_id, member, after, ())

    assert await run()() is True
    assert await add("w1", b, "a")() == ""
    other = Member("b", "work", False, 5, b"eb", _spec("a").replace(b'"p":0', b'"p":5'))
    c = Member("c", "work", False, 0, b"ec", _spec("zz"))
    await check(master, namespace, [
        (run(), False),
        (add("w1", b, "a"), ""),  # a re-send
        (add("w1", other, "a"), "node b is already in the workflow (with another definition)"),
        (add("w9", b, "a"), "workflow run w9 is not running (unknown)"),
        (add("w1", c, "zz"), "unknown node zz"),
    ])  # fmt: skip


async def test_a_workflow_enqueue_whose_run_key_holds_another_type_fails(
    redis: Redis, namespace: str
) -> None:
    """The run's key is checked before the write of nothing (it answered "exists" before)."""
    keys = Keys(namespace)
    await redis.set(keys.workflow("w1"), b"x")
    before = await snapshot(redis, namespace)
    member = Member("a", "work", True, 0, b"ea", _spec())
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await WorkflowScripts(redis, keys).enqueue("w1", "flow", 60_000, [member], [], [])
    assert await snapshot(redis, namespace) == before
