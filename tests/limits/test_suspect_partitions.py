"""Isolation of suspects (jobs taken back from dead pools ``max_recoveries - 1`` times) holds for
jobs with a partition too (docs/reliability.md, "Neighbours of a poison job"): a pool fetches at
most one suspect at a time. fetch.lua's lib/limserve.lua took every partitioned suspect whose
partition had its turn, whatever the pool already ran (a fetch with suspects=1 took three). A
suspect a pool may not take now stays queued in its partition, in its place, with nothing
counted for it (running count, rate, turn), its partition first in turn: the next fetch of a
pool without a suspect takes it. On the scripts alone (no pools: exact)."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis

from errands import Enqueuer, Job, WorkerPool
from errands.store.keys import Keys
from errands.store.scripts import Fetched, Scripts
from tests.support.client_env import until
from tests.support.invariants import assert_invariants

ISOLATE = 1  # a job taken back once from a dead pool is a suspect (max_recoveries=2)
# "": the common round (every head from the head of the queue, taken in lim_serve_lean);
# with a per-partition rate, each head is served by lim_serve_head
SPECS = ["", "c=2;R=5/60000"]


async def _queued(
    redis: Redis, namespace: str, layout: list[tuple[str, bool]]
) -> tuple[Scripts, list[str]]:
    """Jobs of "sms" enqueued in order, one per (partition, suspect?) ('' = none); pools "p"
    and "q" registered. The ids in order."""
    keys = Keys(namespace)
    async with Enqueuer(redis, namespace=namespace, strict=None) as enq:
        jobs = [await enq.enqueue("sms", {}, partition=p or None) for p, _ in layout]
    ids = [j.id for j in jobs if j is not None]
    suspects = [i for i, (_, suspect) in zip(ids, layout, strict=True) if suspect]
    await redis.hset(keys.recoveries, mapping=dict.fromkeys(suspects, 1))  # type: ignore[arg-type]
    scripts = Scripts(redis, keys)
    for pool in ("p", "q"):
        await scripts.heartbeat(pool, b"{}", 60_000, mode="register")
    return scripts, ids


async def _state(redis: Redis, keys: Keys) -> dict[str, Any]:
    """What a held suspect must leave as it found it (its partition's turn among them)."""
    return {
        "queue": await redis.zrange(keys.queue("sms"), 0, -1, withscores=True),
        "index": await redis.zrange(keys.partition_queue("sms"), 0, -1),
        "turns": await redis.zmscore(keys.partitions_ready("sms"), ["a", "b", "c"]),
        "first": await redis.zrange(keys.partitions_ready("sms"), 0, 2),
        "running": await redis.hgetall(keys.partitions_running("sms")),
        "rates": await redis.hgetall(keys.rate_log("sms")),
        "seq": await redis.get(keys.seq),
        "waiting": await redis.zrange(keys.partitions_waiting("sms"), 0, -1),
    }


async def _fetch(
    scripts: Scripts, pool: str, batch: int, spec: str, suspects: int
) -> list[Fetched]:
    got = await scripts.fetch(
        pool, 1, batch, [("sms", 0)], ISOLATE, suspects=suspects, specs={"sms": spec}
    )
    assert got is not None
    return list(got)


# heads from the head of the queue (a lean round), or a partition with two jobs first (the heads
# looked up in the partition index)
LAYOUTS = {
    "lean": [("a", True), ("b", True), ("c", True), ("d", False)],
    "looked up": [("a", True), ("a", False), ("b", True), ("c", True), ("d", False)],
}


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
async def test_a_pool_running_a_suspect_takes_no_partitioned_one(
    redis: Redis, namespace: str, spec: str, layout: str
) -> None:
    """Three partitions (a, b, c) whose first job is a suspect, and d's plain job: a pool that
    runs a suspect gets d's job only; a, b and c's suspects stay, nothing counted for them."""
    keys = Keys(namespace)
    scripts, ids = await _queued(redis, namespace, LAYOUTS[layout])
    got = await _fetch(scripts, "p", 10, spec, suspects=1)
    assert [(f.id, f.suspect) for f in got] == [(ids[-1], False)]
    state = await _state(redis, keys)
    assert [m for m, _ in state["queue"]] == [i.encode() for i in ids[:-1]]
    assert state["first"] == [b"a", b"b", b"c"]  # still first in turn, in order
    assert set(state["running"]) == {b"d"}
    assert not any(b":a" in f or b":b" in f or b":c" in f for f in state["rates"])
    assert state["waiting"] == []
    # again: nothing taken, nothing written for them
    assert await _fetch(scripts, "p", 10, spec, suspects=1) == []
    after = await _state(redis, keys)
    assert {k: v for k, v in after.items() if k != "seq"} == {
        k: v for k, v in state.items() if k != "seq"
    }
    await assert_invariants(redis, namespace)


@pytest.mark.parametrize("spec", SPECS)
async def test_a_pool_without_a_suspect_takes_one_and_another_pool_the_next(
    redis: Redis, namespace: str, spec: str
) -> None:
    """A pool with no suspect takes the first in turn (a's) and the plain jobs, not b's or c's;
    then another pool without a suspect takes b's at its next fetch, while the first pool
    (now running a's) still gets none."""
    keys = Keys(namespace)
    layout = [("a", True), ("b", True), ("c", True), ("d", False), ("", True), ("", False)]
    scripts, ids = await _queued(redis, namespace, layout)
    got = await _fetch(scripts, "p", 10, spec, suspects=0)
    # (the unpartitioned suspect stays too: the call took a's)
    assert [(f.id, f.suspect) for f in got] == [(ids[0], True), (ids[3], False), (ids[5], False)]
    assert await redis.zrange(keys.partitions_ready("sms"), 0, 1) == [b"b", b"c"]
    assert await _fetch(scripts, "p", 10, spec, suspects=1) == []
    got = await _fetch(scripts, "q", 10, spec, suspects=0)
    assert [(f.id, f.suspect) for f in got] == [(ids[1], True)]
    got = await _fetch(scripts, "q", 10, spec, suspects=1)
    assert got == []
    assert await redis.zrange(keys.queue("sms"), 0, -1) == [ids[2].encode(), ids[4].encode()]
    await assert_invariants(redis, namespace)


async def test_a_held_suspect_first_in_turn_does_not_hold_a_fetch_of_one_back(
    redis: Redis, namespace: str
) -> None:
    """A fetch of one job whose first partition in turn holds a suspect it may not take gets
    the next partition's job (the held partition is passed over for the rest of the call)."""
    scripts, ids = await _queued(redis, namespace, [("a", True), ("b", False), ("c", False)])
    got = await _fetch(scripts, "p", 1, "", suspects=1)
    assert [f.id for f in got] == [ids[1]]
    got = await _fetch(scripts, "p", 1, "", suspects=1)
    assert [f.id for f in got] == [ids[2]]
    assert await redis.zrange(Keys(namespace).partitions_ready("sms"), 0, 0) == [b"a"]
    got = await _fetch(scripts, "q", 1, "", suspects=0)
    assert [(f.id, f.suspect) for f in got] == [(ids[0], True)]
    await assert_invariants(redis, namespace)


@pytest.mark.parametrize(("held", "batch"), [(20, 1), (56, 10), (100, 100)])
async def test_held_suspects_do_not_spend_the_budget_of_the_partitions_behind_them(
    redis: Redis, namespace: str, held: int, batch: int
) -> None:
    """Partitions whose head is a suspect the pool may not take are passed over without being
    charged to the call's budget of 4 x batch + 16 turns: the job of the partition in turn
    behind them is taken. (Charged, 20 of them spent a fetch of one, 56 a fetch of ten, on
    every fetch of a pool that runs a suspect: found in review.)"""
    layout = [(f"s{i}", True) for i in range(held)] + [("z", False)]
    scripts, ids = await _queued(redis, namespace, layout)
    got = await _fetch(scripts, "p", batch, "", suspects=1)
    assert [f.id for f in got] == [ids[-1]]
    assert await redis.zrange(Keys(namespace).partitions_ready("sms"), 0, 0) == [b"s0"]
    await assert_invariants(redis, namespace)


@pytest.mark.parametrize(
    ("held", "batch", "taken"),
    [
        (20, 1, True),
        (30, 1, False),
        (75, 10, True),
        (85, 10, False),
        (390, 100, True),
        (410, 100, False),
    ],
)
async def test_the_held_partitions_read_again_are_bounded(
    redis: Redis, namespace: str, held: int, batch: int, taken: bool
) -> None:
    """Held partitions are read again each round (they keep their turn, first): a round starts
    while fewer than 4 x (room + 64) + 16 turns were read (276 for a fetch of one: 22 rounds of
    one more held each), so its work stays linear in its room whatever the number of suspects
    first in turn: it passes over about 22 in a fetch of one, 80 in a fetch of ten, 400 in a
    fetch of a hundred (docs/reliability.md).
    (Unbounded, 3,100 held made a fetch of 1,000 take 0.7 s of Redis: found in review.) A pool
    without a suspect takes the first of them."""
    layout = [(f"s{i}", True) for i in range(held)] + [("z", False)]
    scripts, ids = await _queued(redis, namespace, layout)
    got = await _fetch(scripts, "p", batch, "", suspects=1)
    assert [f.id for f in got] == ([ids[-1]] if taken else [])
    got = await _fetch(scripts, "q", 1, "", suspects=0)
    assert [(f.id, f.suspect) for f in got] == [(ids[0], True)]
    await assert_invariants(redis, namespace)


async def test_a_pool_runs_its_partitioned_suspects_one_at_a_time(
    redis: Redis, namespace: str
) -> None:
    """The worker's way (its suspect count sent, FCALL of the library): of a, b and c's
    suspects one runs at a time, beside d's plain job, each after the one before ends; fetches
    in between take none of them. On main all three started together."""
    scripts, ids = await _queued(redis, namespace, LAYOUTS["lean"])
    await scripts.deregister("p")
    await scripts.deregister("q")
    suspects = ids[:3]
    pool = WorkerPool(
        redis, namespace=namespace, concurrency=4, max_recoveries=ISOLATE + 1, poll_interval=0.01
    )
    started: list[str] = []
    released: set[str] = set()
    running: set[str] = set()
    most = 0

    @pool.job("sms")
    async def sms(job: Job) -> None:
        nonlocal most
        started.append(job.id)
        if job.id in suspects:
            running.add(job.id)
            most = max(most, len(running))
            await until(lambda: job.id in released, timeout=10)
            running.discard(job.id)

    async with pool:
        worker = pool.worker
        assert worker is not None
        fetches = 0
        fetch = worker.scripts.fetch

        async def counted(*args: Any, **kwargs: Any) -> Any:
            nonlocal fetches
            fetches += 1
            return await fetch(*args, **kwargs)

        worker.scripts.fetch = counted  # type: ignore[method-assign]
        try:
            for n, suspect in enumerate(suspects):
                await until(lambda: suspect in started, timeout=5)  # noqa: B023
                seen = fetches
                await until(lambda: fetches >= seen + 3, timeout=5)  # noqa: B023
                assert [i for i in started if i in suspects] == suspects[: n + 1]
                released.add(suspect)
            await until(lambda: not running, timeout=5)
            assert await redis.function_list("errands_fetch_*")  # (the library it called)
        finally:
            released.update(suspects)
            await pool.stop(grace=1)
    assert (most, sorted(started)) == (1, sorted(ids))
