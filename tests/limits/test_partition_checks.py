"""The partitioned path's keys are type-checked by the reads it makes anyway before its first
write: the fetch asks `partitions` once (HLEN: whether a job has a partition, and its type; no
EXISTS), seq once (not_counter's GET); the ack reads the jobs' partitions and their running
counts with redis.pcall (no HLEN of either). A key of another type still fails the call before
its first write, with the clean error."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from errands import Enqueuer
from errands.store.keys import Keys
from errands.store.records import Fetched
from errands.store.scripts import Acked, Scripts
from tests.support.commandstats import command_calls
from tests.support.resend import snapshot

SPEC = {"sms": "c=2"}


async def _fetched(redis: Redis, namespace: str) -> tuple[Scripts, list[Fetched]]:
    async with Enqueuer(redis, namespace=namespace, strict=None) as enq:
        for i in range(8):
            await enq.enqueue("sms", {}, partition=f"p{i % 4}")
    scripts = Scripts(redis, Keys(namespace))
    await scripts.heartbeat("p", b"{}", 60_000, mode="register")
    await scripts.fetch("p", 1, 0, [("sms", 0)], specs=SPEC)  # the script loaded
    await redis.config_resetstat()
    got = await scripts.fetch("p", 1, 4, [("sms", 0)], specs=SPEC)
    assert got is not None and len(got) == 4
    return scripts, list(got)


def _acked(got: list[Fetched]) -> list[Acked]:
    return [Acked(f.id, "sms", b"null", 1, 0, 1, f.token) for f in got]


async def test_a_partitioned_fetch_and_ack_ask_each_partition_key_once(
    own_redis: Redis, namespace: str
) -> None:
    scripts, got = await _fetched(own_redis, namespace)
    sent = await command_calls(own_redis)
    # the fetch: `partitions` by its HLEN alone (an EXISTS of it before), seq by one GET (two
    # before: a type check and not_counter's); EXISTS of `listening` and the attempt counter's
    # GETs are the common path's
    assert sent["exists"] <= 1 and sent["get"] <= 3
    await own_redis.config_resetstat()
    assert await scripts.ack("p", _acked(got), False, 1, False) == []
    sent = await command_calls(own_redis)
    # the ack: no HLEN of `partitions` nor of the name's running counts (read with HMGET
    # before the first write): 10 HLENs before, 8 now
    assert sent["hlen"] <= 8
    assert sent["hmget"] == 6  # attempts, envelopes, partitions, running counts, two counters


@pytest.mark.parametrize("family", ["partitions", "partitions_running"])
async def test_an_ack_meeting_a_partition_key_of_another_type_fails_cleanly(
    own_redis: Redis, namespace: str, family: str
) -> None:
    """`partitions` of another type raised Redis' own WRONGTYPE in its HMGET (before any
    write, but not the clean error of every other key): a key every name shares fails the call
    cleanly. The name's own running counts of another type leave its jobs alone as unfit
    (ack.lua: the other names' jobs are acknowledged), nothing of them written."""
    keys = Keys(namespace)
    scripts, got = await _fetched(own_redis, namespace)
    key = keys.partitions if family == "partitions" else keys.partitions_running("sms")
    await own_redis.delete(key)
    await own_redis.set(key, "x")
    before = await snapshot(own_redis, namespace)
    if family == "partitions":
        with pytest.raises(ResponseError, match=r"WRONGTYPE .* holds another type: nothing ack"):
            await scripts.ack("p", _acked(got), False, 1, False)
    else:
        report = await scripts.ack_report("p", _acked(got), False, 1, False)
        assert (sorted(report.unfit), report.refused) == (sorted(f.id for f in got), [])
    assert await snapshot(own_redis, namespace) == before
    await own_redis.delete(key)  # (repaired: the jobs are acknowledged)
