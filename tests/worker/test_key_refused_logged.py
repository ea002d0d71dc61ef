"""A namespace-wide key of the wrong type (`seq` a hash, `stats` a string: written by hand, a bad
restore) makes every fetch, ack, promote or reap refuse as a whole (lib/types.lua, before any
write): the pool logs one ERROR per component naming the key, its type and the repair, however
many calls it retries, and a WARNING once a call goes through again; its jobs run once the key
is repaired. (Each retry logged an ERROR, up to every 5 s, reading `fetch or start failed
(server:ResponseError)`: redis-py's repr of an error reply hides its message, so neither the key
nor the reason was in the log; the reaper logged its refusal on every pass.)"""

from __future__ import annotations

import asyncio
import logging

import pytest
from redis.asyncio import Redis
from redis.exceptions import NoScriptError, OutOfMemoryError, ReadOnlyError, ResponseError

from errands import Concurrency, Enqueuer, Job, WorkerPool
from errands.clock import SystemClock
from errands.outagelog import OutageLog
from errands.store.keys import Keys
from errands.store.scripts import Scripts
from errands.worker.reaper import Reaper
from errands.worker.repairs import log_refusal
from tests.support.procs import eventually


async def _true(value: bool) -> bool:
    return value


def _lines(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level]


@pytest.mark.parametrize(
    ("which", "kind", "repair"), [("seq", "hash", "SET"), ("stats", "string", "DEL")]
)
async def test_a_pool_logs_a_key_of_the_wrong_type_once_and_runs_once_repaired(
    redis: Redis, namespace: str, caplog: pytest.LogCaptureFixture, which: str, kind: str,
    repair: str
) -> None:  # fmt: skip
    keys = Keys(namespace)
    key = keys.seq if which == "seq" else keys.stats
    pool = WorkerPool(redis, namespace=namespace, concurrency=4, poll_interval=0.05)
    ran: list[str] = []

    @pool.job("work", limits=[Concurrency(1, per_partition=True)])
    async def work(job: Job) -> None:
        ran.append(job.id)

    async with Enqueuer(redis, namespace=namespace) as enq:
        await enq.enqueue("work", {}, partition="a", job_id="a0")  # (a fetch reads seq then)
    await redis.delete(key)
    if which == "seq":
        await redis.hset(key, "f", "1")  # type: ignore[misc]
    else:
        await redis.set(key, "x")
    caplog.set_level(logging.INFO, logger="errands")
    await pool.start()
    try:
        await asyncio.sleep(1.0)  # (five retries or so: 0.05 s, then doubling)
        errors = [line for line in _lines(caplog, logging.ERROR) if key in line]
        assert len(errors) == 1 + (which == "seq"), errors  # (the fetch's; the promote's too)
        assert len(_lines(caplog, logging.ERROR)) == len(errors), _lines(caplog, logging.ERROR)
        for line in errors:
            assert f"{key} is a {kind}; repair: {repair} {key}" in line
        await redis.delete(key)  # repaired
        await eventually(lambda: _true(ran == ["a0"]), 10, "the job, once repaired")
        await eventually(
            lambda: _true(any("go through again" in w for w in _lines(caplog, logging.WARNING))),
            10,
            "the line saying calls go through again",
        )
    finally:
        await pool.stop()


@pytest.mark.parametrize("spaced", ["", " with spaces"])
async def test_the_reaper_logs_a_refused_pool_once(
    redis: Redis, namespace: str, caplog: pytest.LogCaptureFixture, spaced: str
) -> None:
    """Once, with the key's type and repair; in a namespace with spaces too (store/keys.py
    allows them: the key, read as one token, was the part after the last space, its type
    left out of the line)."""
    namespace += spaced
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    async with Enqueuer(redis, namespace=namespace, strict=None) as enq:
        await enq.enqueue("work", job_id="w1")
    await scripts.heartbeat("dead", b"{}", 60_000, mode="register")
    got = await scripts.fetch("dead", 0, 10, [("work", 0)])
    assert got is not None and len(got) == 1
    await redis.zadd(keys.pools, {"dead": 1})
    await redis.set(keys.seq, "x")
    reaper = Reaper(scripts, SystemClock(), "me", None, 1.0, 1.0, max_recoveries=3)
    with caplog.at_level(logging.WARNING, logger="errands"):
        for _ in range(3):
            assert await reaper.reap_once() == 0
        [line] = _lines(caplog, logging.ERROR)
        assert "pool dead not reaped" in line and f"{keys.seq} is a string" in line
        await redis.set(keys.seq, "7")  # repaired
        assert await reaper.reap_once() == 1
    assert "reaper: pool dead is no longer refused" in caplog.text


@pytest.mark.parametrize(
    "exc",
    [
        ReadOnlyError("You can't write against a read only replica."),
        OutOfMemoryError("command not allowed when used memory > 'maxmemory'."),
        ResponseError("MISCONF Redis is configured to save RDB snapshots, but it's failing"),
        NoScriptError("No matching script. Please use EVAL."),
        ResponseError("errands: fetch: ARGV[2] is not a whole number: nothing fetched"),
    ],
)
async def test_an_error_reply_naming_no_held_key_is_no_refusal(
    redis: Redis, namespace: str, caplog: pytest.LogCaptureFixture, exc: ResponseError
) -> None:
    """Only lib/types.lua's refusals (a key named as holding another type or value) are logged
    once per reason; READONLY after a failover, OOM, MISCONF... go back to the caller, which
    logs them each time (they were logged once, then "repaired", however long they lasted)."""
    outage = OutageLog(logging.getLogger("errands.test.refusal"), "fetch loop")
    with caplog.at_level(logging.INFO, logger="errands"):
        for _ in range(3):
            assert not await log_refusal(outage, exc, redis, Keys(namespace))
    assert caplog.records == [] and outage.since is None
    refusal = ResponseError(f"WRONGTYPE {Keys(namespace).seq} holds another type: nothing fetched")
    assert await log_refusal(outage, refusal, redis, Keys(namespace))


@pytest.mark.parametrize(
    "message",
    ["WRONGTYPE {key} holds another type: nothing fetched",
     "errands: {key} holds 1 holds 2, not a counter: nothing fetched"],
)  # fmt: skip
async def test_a_refusal_in_a_namespace_with_spaces_names_its_key(
    redis: Redis, namespace: str, caplog: pytest.LogCaptureFixture, message: str
) -> None:
    """lib/types.lua's refusals name a key of a namespace that may hold spaces (and " holds "):
    it is a refusal, logged once with that key's type and repair (it was no refusal at all for
    the fetch, ack and promote loops: logged at each retry, without the repair)."""
    keys = Keys(f"{namespace} a holds b")
    await redis.set(keys.seq, "x y")
    outage = OutageLog(logging.getLogger("errands.test.refusal"), "fetch loop")
    refusal = ResponseError(message.format(key=keys.seq))
    with caplog.at_level(logging.INFO, logger="errands"):
        for _ in range(3):
            assert await log_refusal(outage, refusal, redis, keys)
    [line] = _lines(caplog, logging.ERROR)
    assert f"({keys.seq} is a string; repair: SET {keys.seq} <n>" in line, line
