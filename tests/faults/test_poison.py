"""Scenario 9 of issue 8: poison payloads and a job that kills its worker process every time.

Undecodable entries are planted where errands keeps job ids: a queue, the scheduled and retry
sets, and the in-progress set of a dead pool (also entries that are not ``<id>:<name>`` at all).
Bound: each poison job ends in the dead set with a reason that says what is wrong, the job that
kills its worker is buried after 3 deaths ("worker died while running this job 3 times"), a
10 MB argument and an unknown envelope field do no harm, and 100 ordinary jobs run meanwhile.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import orjson
import pytest
from redis.asyncio import Redis

from errands import Enqueuer
from errands.admin.records import read_done
from tests.support.procs import eventually

from .common import FAST, Fleet, Oracle, assert_nothing_stuck, report

pytestmark = pytest.mark.faults

TEN_MB = 10 * 1024 * 1024


async def test_poison_payloads_and_a_job_that_kills_its_worker(
    fleet: Fleet, main: Redis, oracle: Oracle, fault_redis_url: str, namespace: str
) -> None:
    keys = fleet.keys
    now_ms = int(time.time() * 1000)

    def new_id() -> str:
        return uuid.uuid4().hex

    # planted straight into Redis: id -> (where, envelope, expected words in the reason)
    planted: dict[str, tuple[str, bytes, str]] = {
        new_id(): ("queue", b"this is not json", "undecodable"),
        new_id(): ("queue", b'{"n":"work","a":{"s":"\xff\xfe"},"t":1}', "undecodable"),
        new_id(): ("queue", b'{"n":"work","a":{"x":"' + b"y" * TEN_MB, "undecodable"),
        new_id(): ("scheduled", b"[1,2,3]", "expected a JSON object"),
        new_id(): ("retry", b'{"n":"work","a":[1],"t":1}', "args must be an object"),
        new_id(): ("in progress", b"\x00\x01garbage", "undecodable"),
        new_id(): ("bad member", b'{"n":"work","a":{},"t":1}', "malformed in-progress entry"),
    }
    harmless = new_id()  # an envelope field this version does not know: ignored
    dead_pool = "deadbeef" + new_id()[:8]
    ip = keys.in_progress(dead_pool)
    async with main.pipeline(transaction=True) as pipe:
        for job_id, (where, envelope, _why) in planted.items():
            pipe.hset(keys.jobs, job_id, envelope)
            if where == "queue":
                pipe.zadd(keys.queue("work"), {job_id: 0})
            elif where == "scheduled":
                pipe.zadd(keys.scheduled("work"), {job_id: now_ms - 1000})
            elif where == "retry":
                pipe.zadd(keys.retry("work"), {job_id: now_ms - 1000})
            elif where == "in progress":
                pipe.zadd(ip, {f"{job_id}:work": now_ms - 60_000})
                pipe.hincrby(keys.running, "work", 1)  # as the fetch that put it there did
            else:
                pipe.zadd(ip, {f"{job_id}:{{bad}}": now_ms - 60_000})
        pipe.hset(keys.jobs, harmless, b'{"n":"work","a":{},"t":1,"zz":{"new":1}}')
        pipe.zadd(keys.queue("work"), {harmless: 1})
        # entries that name no job at all
        pipe.zadd(ip, {b"no-colon-here": 1, b"\xff\xfe:work": 1, b":work": 1})
        pipe.zadd(keys.pools, {dead_pool: now_ms - 3_600_000})
        await pipe.execute()

    # max_payload=None: a 10 MB job is refused at enqueue by default since 1 MiB is the limit;
    # here it is the worker's handling of one that is tested
    async with Enqueuer.from_url(
        fault_redis_url, namespace=namespace, max_payload=None
    ) as enqueuer:
        bogus = await enqueuer.enqueue("work", {"bogus": 1})
        big = await enqueuer.enqueue("sink", {"blob": "x" * TEN_MB})
        killer = await enqueuer.enqueue("die")
        ordinary = [j.id for j in await enqueuer.enqueue_many([("work", {"seconds": 0.05})] * 100)]
    assert bogus is not None and big is not None and killer is not None

    # three pools, kept at three: the "die" job kills one per attempt
    fleet.env.update(FAST, FAULT_MAX_RECOVERIES="3", FAULT_CONCURRENCY="8")
    began = time.monotonic()
    for _ in range(3):
        fleet.start()
    supervising = True

    async def supervise() -> None:
        while supervising:
            for _ in range(3 - len(fleet.alive)):
                fleet.start()
            await asyncio.sleep(0.05)

    supervisor = asyncio.create_task(supervise())
    try:
        await oracle.wait_ended([*ordinary, big.id, harmless], timeout=30)
        expected_dead = {*planted, bogus.id, killer.id}

        async def buried() -> bool:
            dead = {m.decode() for m in await main.zrange(keys.dead, 0, -1)}
            return expected_dead <= dead

        await eventually(buried, 30, "every poison job in the dead set", interval=0.1)
    finally:
        supervising = False
        await supervisor
    took = time.monotonic() - began

    reasons = {
        job_id: orjson.loads(await main.hget(keys.errors, job_id))["error"]
        for job_id in expected_dead
    }
    for job_id, (where, _envelope, why) in planted.items():
        assert why in reasons[job_id], (where, reasons[job_id])
    assert "unexpected argument 'bogus'" in reasons[bogus.id]
    assert reasons[killer.id] == "worker died while running this job 3 times"
    killer_runs = [s for s in await oracle.starts() if s.id == killer.id]
    assert len(killer_runs) == 3
    assert {m.decode() for m in await main.zrange(keys.dead, 0, -1)} == expected_dead
    assert not await main.exists(ip)
    assert await main.zscore(keys.pools, dead_pool) is None
    result = (await read_done(main, keys, big.id) or {}).get("result")
    assert result == TEN_MB
    await assert_nothing_stuck(main, keys, ["work", "sink", "die"])
    report(
        "9. poison payloads and a job killing its worker",
        poison_entries=len(planted) + 1,
        malformed_members_removed=3,
        buried_with_reason=len(expected_dead),
        worker_deaths_before_burial=len(killer_runs),
        ordinary_jobs_done=len(ordinary),
        ten_mb_job="ran",
        unknown_envelope_field="ignored, ran",
        runtime_s=took,
    )
