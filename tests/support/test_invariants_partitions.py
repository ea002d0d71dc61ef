"""The invariant checker's partitions check (tests/support/invariants/partitions.py): quiet on the
states the scripts leave (jobs of partitions queued, taken, waiting for their rate, a partition
kept in turn after its last job), and it reports each stale index entry written by hand."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from redis.asyncio import Redis

from errands import Enqueuer
from errands.store.keys import Keys
from errands.store.scripts import Scripts
from tests.support.invariants import Report, assert_invariants, check_invariants

OFFSET = 2**52


def entry(partition: str, score: float, job_id: str) -> str:
    return f"{partition}\0{int(score + OFFSET):016d}\0{job_id}"


def expect(report: Report, *words: str) -> None:
    hits = [v for v in report.violations if v.check == "partitions"]
    hits = [v for v in hits if all(w in v.detail for w in words)]
    assert hits, f"no [partitions] violation with {words}:\n{report.describe()}"


@pytest.fixture
async def state(redis: Redis, namespace: str) -> dict[str, str]:
    """A1 and A2 of partition A queued, B1 of B queued; C1 of C scheduled (not indexed); one job
    without a partition queued."""
    async with Enqueuer(redis, namespace=namespace, strict=None) as enq:
        jobs = {
            "A1": await enq.enqueue("sms", {}, partition="A"),
            "A2": await enq.enqueue("sms", {}, partition="A"),
            "B1": await enq.enqueue("sms", {}, partition="B"),
            "C1": await enq.enqueue("sms", {}, partition="C", delay=3600),
            "plain": await enq.enqueue("sms", {}),
        }
    ids = {role: job.id for role, job in jobs.items() if job is not None}
    await assert_invariants(redis, namespace)
    return ids


async def test_legal_states_pass(redis: Redis, namespace: str, state: dict[str, str]) -> None:
    """A fetch of one job (served from the head of the queue, its partition back in turn);
    then of all (A and B kept in turn without jobs: the index is empty, so none is left)."""
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    await scripts.heartbeat("p", b"{}", 60_000, mode="register")
    got = await scripts.fetch("p", 1, 1, [("sms", 0)], specs={"sms": "c=2"})
    assert got is not None and [f.id for f in got] == [state["A1"]]
    report = await assert_invariants(redis, namespace)
    assert report.figures["idle_turns"] == 0
    got = await scripts.fetch("p", 1, 8, [("sms", 0)], specs={"sms": "c=2"})
    assert got is not None and len(got) == 3
    report = await assert_invariants(redis, namespace)
    assert await redis.exists(keys.partitions_ready("sms")) == 0


async def test_a_partition_kept_in_turn_without_jobs_is_legal(redis: Redis, namespace: str) -> None:
    """X's only job taken from the head of the queue keeps X in turn (lib/limserve.lua
    lim_take_head; lim_prune leaves it: A's entries outnumber the turns): legal, counted."""
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    await scripts.heartbeat("p", b"{}", 60_000, mode="register")
    async with Enqueuer(redis, namespace=namespace, strict=None) as enq:
        x = await enq.enqueue("sms", {}, partition="X")
        for _ in range(3):
            await enq.enqueue("sms", {}, partition="A")
    got = await scripts.fetch("p", 1, 1, [("sms", 0)], specs={"sms": "c=1"})
    assert got is not None and x is not None and [f.id for f in got] == [x.id]
    assert sorted(await redis.zrange(keys.partitions_ready("sms"), 0, -1)) == [b"A", b"X"]
    report = await assert_invariants(redis, namespace)
    assert report.figures["idle_turns"] == 1


Breaker = Callable[[Redis, Keys, dict[str, str]], Awaitable[object]]


async def _score(r: Redis, k: Keys, job_id: str) -> float:
    score = await r.zscore(k.queue("sms"), job_id)
    assert score is not None
    return float(score)


async def _move_entry(r: Redis, k: Keys, job_id: str, partition: str, score: float | None) -> None:
    """job_id's entry (of partition A) replaced by one of ``partition`` at ``score`` (None: its
    own)."""
    own = await _score(r, k, job_id)
    await r.zrem(k.partition_queue("sms"), entry("A", own, job_id))
    at = own if score is None else score
    await r.zadd(k.partition_queue("sms"), {entry(partition, at, job_id): 0})


# case -> (breaker, words of the violation; "<role>" stands for that job's id)
BROKEN: dict[str, tuple[Breaker, tuple[str, ...]]] = {
    "entry of a job not stored": (
        lambda r, k, ids: r.zadd(k.partition_queue("sms"), {entry("A", 5, "f" * 32): 0}),
        ("f" * 32, "in sms[A]", "not stored"),
    ),
    "entry of a scheduled job": (
        lambda r, k, ids: r.zadd(k.partition_queue("sms"), {entry("C", 5, ids["C1"]): 0}),
        ("<C1>", "not queued in sms", "scheduled:sms"),
    ),
    "entry at another score": (
        lambda r, k, ids: _move_entry(r, k, ids["A2"], "A", 7),
        ("<A2>", "in sms[A] at score 7, queued at"),
    ),
    "entry of another partition": (
        lambda r, k, ids: _move_entry(r, k, ids["A2"], "B", None),
        ("<A2>", "in sms[B]", "its partition is A"),
    ),
    "malformed entry": (
        lambda r, k, ids: r.zadd(k.partition_queue("sms"), {"A\x00x\x00y": 0}),
        ("malformed index entry",),
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
async def test_each_stale_entry_is_reported(
    redis: Redis, namespace: str, state: dict[str, str], case: str
) -> None:
    breaker, words = BROKEN[case]
    await breaker(redis, Keys(namespace), state)
    words = tuple(state[w[1:-1]] if w.startswith("<") else w for w in words)
    expect(await check_invariants(redis, namespace), *words)


async def test_an_entry_of_a_job_that_left_the_queue_is_reported(
    redis: Redis, namespace: str, state: dict[str, str]
) -> None:
    """A1 moved to the dead set by hand, its entry left behind."""
    keys = Keys(namespace)
    await redis.zrem(keys.queue("sms"), state["A1"])
    await redis.zadd(keys.dead, {state["A1"]: 1})
    report = await check_invariants(redis, namespace)
    expect(report, state["A1"], "not queued in sms", "dead")
    assert [v.check for v in report.violations] == ["partitions"], report.describe()
