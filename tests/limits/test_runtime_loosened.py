"""Per-partition limits loosened at run time (``Client.set_limits``, a deploy) reach a partition
held back under the old ones only when it comes back to the turns: a job of it ends (busy), its
old rate window frees (rate limited), or a job of it is enqueued. Not at once: the readmission
at each fetch under other limits was reverted (f2c5188, tests/limits/test_readmit_deploy.py).
A lowered one stops no running job: it holds back the next starts. What docs/limits.md says of
them ("Changing limits at run time")."""

from __future__ import annotations

from redis.asyncio import Redis

from errands import Enqueuer
from errands.enqueuer import EnqueueItem
from errands.store.keys import Keys
from errands.store.records import Acked
from errands.store.scripts import Scripts
from tests.support.ready import ready_to_fetch

JOBS: list[EnqueueItem] = [("sms", {}, {"partition": "p"})] * 3


async def _fetch(scripts: Scripts, spec: str) -> list[str]:
    got = await scripts.fetch("p", 1, 4, [("sms", 0)], specs={"sms": spec})
    assert got is not None
    return [f.id for f in got]


async def test_a_raised_concurrency_reaches_a_busy_partition_when_a_job_of_it_ends_or_comes(
    redis: Redis, namespace: str
) -> None:
    scripts = await ready_to_fetch(redis, namespace, JOBS)
    got = await scripts.fetch("p", 1, 4, [("sms", 0)], specs={"sms": "c=1"})
    assert got is not None
    (first,) = got
    assert await _fetch(scripts, "c=1") == []  # busy: out of the turns
    assert await _fetch(scripts, "c=3") == []  # raised: still out until a job of it ends
    async with Enqueuer(redis, namespace=namespace, strict=None) as enqueuer:
        assert await enqueuer.enqueue("sms", {}, partition="p") is not None
    assert len(await _fetch(scripts, "c=3")) == 2  # an enqueue gave it a turn: 3 run
    done = Acked(first.id, "sms", b"null", 1, 0, 1, first.token)
    assert await scripts.ack("p", [done], False, 1, False) == []
    assert len(await _fetch(scripts, "c=3")) == 1  # an end gave it a turn


async def test_a_cleared_rate_reaches_a_waiting_partition_when_its_old_window_frees_or_a_job_comes(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    scripts = await ready_to_fetch(redis, namespace, JOBS)
    assert len(await _fetch(scripts, "R=1/600000")) == 1
    assert await _fetch(scripts, "R=1/600000") == []  # waits (pwait) 10 minutes
    assert await redis.zscore(keys.partitions_waiting("sms"), "p") is not None
    assert await _fetch(scripts, "") == []  # the rate cleared: it waits on all the same
    async with Enqueuer(redis, namespace=namespace, strict=None) as enqueuer:
        assert await enqueuer.enqueue("sms", {}, partition="p") is not None
    assert len(await _fetch(scripts, "")) == 3  # an enqueue gave it a turn


async def test_a_lowered_concurrency_stops_no_running_job_and_holds_back_the_next_starts(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    scripts = await ready_to_fetch(redis, namespace, JOBS)
    got = await scripts.fetch("p", 1, 4, [("sms", 0)], specs={"sms": "c=2"})
    assert got is not None and len(got) == 2
    assert await _fetch(scripts, "c=1") == []  # lowered: both run on, none more starts
    done = Acked(got[0].id, "sms", b"null", 1, 0, 1, got[0].token)
    assert await scripts.ack("p", [done], False, 1, False) == []
    assert await redis.hget(keys.partitions_running("sms"), "p") == b"1"
    assert await _fetch(scripts, "c=1") == []  # one runs: still full under the new limit
    done = Acked(got[1].id, "sms", b"null", 1, 0, 1, got[1].token)
    assert await scripts.ack("p", [done], False, 1, False) == []
    assert len(await _fetch(scripts, "c=1")) == 1


async def test_a_loosened_rate_holds_a_waiting_partition_until_its_old_window_frees_not_longer(
    redis: Redis, namespace: str
) -> None:
    """How late a loosened (or cleared) per-partition rate reaches a partition the old one holds:
    exactly until the time the old rate gave it (its start counted at c frees at c + per + 1), and
    not later: once that time passes (moved into the past here, as time would pass), the next
    fetch under the new limits serves it, with no enqueue or end to bring it back."""
    keys = Keys(namespace)
    scripts = await ready_to_fetch(redis, namespace, JOBS)
    got = await scripts.fetch("p", 1, 4, [("sms", 0)], specs={"sms": "R=1/600000"})
    assert got is not None and len(got) == 1
    counted = got[0].counted_ms
    assert counted > 0
    assert await _fetch(scripts, "R=1/600000") == []
    waits = keys.partitions_waiting("sms")
    assert await redis.zscore(waits, "p") == counted + 600_000 + 1  # the old rate's time
    for spec in ("R=3/600000", ""):  # raised, then cleared: still held until then
        assert await _fetch(scripts, spec) == []
    await redis.zadd(waits, {"p": counted - 1})  # (that time passed)
    assert len(await _fetch(scripts, "R=3/600000")) == 2  # the new rate: 2 more in the window
    assert await redis.zscore(waits, "p") is None
