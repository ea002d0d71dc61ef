"""The checker's read of a namespace is consistent while pools run (tests/support/invariants/
layout.py): its keys are listed and read in one step (snapshot.lua). The read it replaces listed
them with SCAN, then read them in a MULTI: a job moving meanwhile into a key the SCAN had not
seen was in no place, a false violation (the soak's seed 106 met it)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis

from errands import Enqueuer
from errands.store.keys import Keys
from errands.store.scripts import Acked, Scripts
from tests.support.invariants import assert_invariants, check_invariants
from tests.support.invariants.checks import CHECKS
from tests.support.invariants.layout import LAYOUT, Dump, Snapshot, _escape_glob, build, dump, text
from tests.support.invariants.report import Violation


async def scan_then_read(
    redis: Redis, keys: Keys, between: Callable[[], Awaitable[object]]
) -> Snapshot:
    """The read before: the keys SCAN lists, then (after ``between``) in one MULTI the single
    keys of the layout and the keys listed, as they are then (modelled by a dump of the
    namespace without the keys the SCAN did not list)."""
    pattern = _escape_glob(keys.prefix) + "*"
    listed = {text(k) async for k in redis.scan_iter(match=pattern, count=1000)}
    await between()
    d = await dump(redis, keys)
    singles = {getattr(keys, p) for kind in ("hash", "zset", "set", "string") for p in LAYOUT[kind]}
    kept = [k for k in d.types if k in listed or k in singles]
    return build(
        keys,
        Dump(d.now_ms, {k: d.types[k] for k in kept}, {k: d.ttls[k] for k in kept},
             {k: d.values[k] for k in kept}),
    )  # fmt: skip


def violations(s: Snapshot) -> list[Violation]:
    return [v for check in CHECKS for v in check(s)]


async def test_a_job_fetched_between_the_listing_and_the_reads(
    redis: Redis, namespace: str
) -> None:
    """A job alone in its queue is fetched by a pool with nothing in progress between the two
    steps of the old read: its queue (listed) is gone, its pool's in-progress set (not listed)
    not read, so the job is in no place. The read in one step finds it in progress."""
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    await scripts.heartbeat("p", b"{}", 60_000, mode="register")
    async with Enqueuer(redis, namespace=namespace, strict=None) as enq:
        job = await enq.enqueue("ok", {})
    assert job is not None
    await assert_invariants(redis, namespace)

    async def fetch() -> None:
        got = await scripts.fetch("p", 1, 1, [("ok", 0)])
        assert got is not None and [f.id for f in got] == [job.id]

    found = violations(await scan_then_read(redis, keys, fetch))
    assert any(
        v.check == "places" and f"job {job.id} (ok) is in no place" in v.detail for v in found
    ), found
    report = await assert_invariants(redis, namespace)  # the same state, read in one step
    assert report.figures["places"] == {"in-progress": 1}


async def test_no_false_violation_while_jobs_move(redis: Redis, namespace: str) -> None:
    """Snapshots taken while jobs are enqueued (to names new each time: their queues appear and
    vanish), fetched and acknowledged find nothing wrong."""
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    await scripts.heartbeat("p", b"{}", 60_000, mode="register")
    stop = asyncio.Event()

    async def work() -> None:
        async with Enqueuer(redis, namespace=namespace, strict=None) as enq:
            for i in range(10_000):
                if stop.is_set():
                    return
                name = f"n{i % 50}"
                await enq.enqueue(name, {})
                got = await scripts.fetch("p", 1, 4, [(name, 0)])
                assert got is not None
                done = [Acked(f.id, name, b"null", 1, 0, 1, f.token) for f in got]
                await scripts.ack("p", done, False, 1, False)

    worker = asyncio.create_task(work())
    try:
        for _ in range(60):
            report = await check_invariants(redis, namespace)
            assert report.ok, report.describe()
            await asyncio.sleep(0)
    finally:
        stop.set()
        await worker
    await assert_invariants(redis, namespace, drained=True)


async def test_a_key_of_another_type_is_reported(redis: Redis, namespace: str) -> None:
    keys = Keys(namespace)
    await redis.set(keys.running, b"3")
    report = await check_invariants(redis, namespace)
    assert [v.detail for v in report.violations] == [
        f"key {keys.running} is a string, not a hash: read as absent"
    ]
