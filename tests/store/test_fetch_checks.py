"""fetch.lua checks its arguments, and the keys it will touch, before its first write; and it
reads what concerns every job once per call (unique locks, listeners), not once per job."""

from __future__ import annotations

from collections.abc import Awaitable

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from errands import Enqueuer
from errands.enqueuer import EnqueueItem
from errands.store.keys import Keys
from errands.store.scripts import Scripts
from tests.support.ready import ready_to_fetch
from tests.support.resend import snapshot


def _ready(redis: Redis, namespace: str, jobs: int = 2, **options: str) -> Awaitable[Scripts]:
    """``jobs`` jobs of "first" enqueued (with ``options``) and pool p registered."""
    items: list[EnqueueItem] = [("first", {}, dict(options)) for _ in range(jobs)]
    return ready_to_fetch(redis, namespace, items)


@pytest.mark.parametrize("bad", ["idle_ms", "limit"])
async def test_a_bad_number_fails_the_fetch_before_its_first_write(
    redis: Redis, namespace: str, bad: str
) -> None:
    """A bad idle time (ARGV[9]) or max_concurrency of a later queue failed the call after
    the jobs of the first queue were taken: in progress, and nobody told."""
    scripts = await _ready(redis, namespace)
    queues = [("first", 0), ("second", "x" if bad == "limit" else 0)]
    idle_ms = "soon" if bad == "idle_ms" else 3000
    before = await snapshot(redis, namespace)
    with pytest.raises(ResponseError, match="nothing fetched"):
        await scripts.fetch("p", 1, 10, queues, idle_ms=idle_ms)  # type: ignore[arg-type]
    assert await snapshot(redis, namespace) == before


@pytest.mark.parametrize("family", ["unique", "seq"])
async def test_a_key_it_will_touch_of_another_type_fails_the_fetch_cleanly(
    redis: Redis, namespace: str, family: str
) -> None:
    """Keys shared by every name (a name's own: tests/limits/test_name_keys_skipped.py)."""
    keys = Keys(namespace)
    if family == "unique":
        scripts = await _ready(redis, namespace)
        await redis.hset(keys.unique_of_job, "someone", "digest")  # a unique job exists
        await redis.set(keys.unique, "x")
    else:
        scripts = await _ready(redis, namespace, partition="a")
        await redis.delete(keys.seq)
        await redis.hset(keys.seq, "x", "y")
    before = await snapshot(redis, namespace)
    with pytest.raises(ResponseError, match=r"WRONGTYPE .* holds another type"):
        await scripts.fetch("p", 1, 10, [("first", 0)], specs={"first": "c=1"})
    assert await snapshot(redis, namespace) == before


async def test_a_fetch_reads_unique_locks_and_listeners_once(
    own_redis: Redis, namespace: str
) -> None:
    """Each job taken cost an HGET of unique_of_job, and an HMGET of `listening` while
    anybody listened: now one read of each per call. The envelopes and attempts of a window
    of queue entries are read with one HMGET each too (was: an HGET and an HEXISTS per job)."""
    keys = Keys(namespace)
    scripts = await _ready(own_redis, namespace, jobs=8)
    await own_redis.hset(keys.listening, "*", "9999999999999")
    await scripts.fetch("p", 1, 1, [("first", 0)])  # the script loaded
    await own_redis.config_resetstat()
    got = await scripts.fetch("p", 1, 7, [("first", 0)])
    stats = await own_redis.info("commandstats")
    assert len(got) == 7
    assert "cmdstat_hget" not in stats and "cmdstat_hexists" not in stats
    # envelopes, attempts, listeners; the running counts (checked before the first write)
    assert stats["cmdstat_hmget"]["calls"] == 4
    assert stats["cmdstat_hset"]["calls"] == 1  # the attempts
    assert stats["cmdstat_zadd"]["calls"] == 1  # the in-progress entries
    assert stats["cmdstat_publish"]["calls"] == 7  # every started event still goes out


@pytest.mark.parametrize("bad", ["batch", "limit"])
async def test_an_infinite_number_fails_the_fetch_before_its_first_write(
    redis: Redis, namespace: str, bad: str
) -> None:
    """'inf' passed the check (inf == floor(inf)): a batch of 'inf' moved a due partition from
    waiting to ready, then ZRANGE ... inf raised; a max_concurrency of 'inf' was no limit."""
    scripts = await _ready(redis, namespace, partition="a")
    keys = Keys(namespace)
    await redis.zrem(keys.partitions_ready("first"), "a")  # a waits for a window now passed
    await redis.zadd(keys.partitions_waiting("first"), {"a": 1})
    queues = [("first", 0), ("second", "inf" if bad == "limit" else 0)]
    batch = "inf" if bad == "batch" else 10
    before = await snapshot(redis, namespace)
    with pytest.raises(ResponseError, match="nothing fetched"):
        await scripts.fetch("p", 1, batch, queues)  # type: ignore[arg-type]
    assert await snapshot(redis, namespace) == before


@pytest.mark.parametrize("counter", ["attempt_seq", "seq"])
async def test_a_counter_it_increments_not_a_counter_fails_the_fetch_cleanly(
    redis: Redis, namespace: str, counter: str
) -> None:
    """The attempt counter (INCR at the first job taken) and seq (a partition's turn) were
    only type-checked: 'x' raised after the call had dropped a vanished job's queue entry, or
    moved a partition whose wait was over to the ready ones."""
    keys = Keys(namespace)
    if counter == "attempt_seq":
        scripts = await _ready(redis, namespace)
        await redis.zadd(keys.queue("zero"), {"ghost": 1})  # no envelope: the fetch drops it
        queues = [("zero", 0), ("first", 0)]
    else:
        scripts = await _ready(redis, namespace, partition="a")
        await redis.zrem(keys.partitions_ready("first"), "a")
        await redis.zadd(keys.partitions_waiting("first"), {"a": 1})  # its wait is over
        queues = [("first", 0)]
    await redis.set(getattr(keys, counter), "x")
    before = await snapshot(redis, namespace)
    with pytest.raises(ResponseError, match="not a counter: nothing fetched"):
        await scripts.fetch("p", 1, 10, queues)
    assert await snapshot(redis, namespace) == before


@pytest.mark.parametrize("how", ["plain", "listened", "partitioned"])
async def test_a_fetch_of_ten_thousand_jobs_takes_them_all(
    redis: Redis, namespace: str, how: str
) -> None:
    """A batch job's fetch may ask 10,000 jobs (max_size): the queue entries taken went in
    one ZREM (and the started events' listeners were read with one HMGET) of every id, past
    Lua's ~8,000 values an unpack may give: the call raised after its jobs were taken."""
    keys = Keys(namespace)
    options = {"partition": "a"} if how == "partitioned" else {}
    scripts = await _ready(redis, namespace, jobs=10_000, **options)
    if how == "listened":
        await redis.hset(keys.listening, "*", "9999999999999")
    fetched = await scripts.fetch("p", 1, 10_000, [("first", 0)])
    assert fetched is not None and len(fetched) == 10_000
    assert await redis.zcard(keys.queue("first")) == 0


async def test_a_fetch_with_isolation_reads_recoveries_once_per_window(
    own_redis: Redis, namespace: str
) -> None:
    """With isolation on and some job recovered from dead pools, each job looked at cost an
    HGET of its recoveries: now one HMGET per window of queue entries (and per round of
    partitions). Suspects are still told apart: one runs, the other stays queued."""
    keys = Keys(namespace)
    scripts = await _ready(own_redis, namespace, jobs=8)
    ids = [i.decode() for i in await own_redis.zrange(keys.queue("first"), 0, -1)]
    await own_redis.hset(keys.recoveries, mapping={ids[1]: "2", ids[4]: "3", ids[5]: "1"})
    await scripts.fetch("p", 1, 0, [("first", 0)], 2)  # the script loaded
    await own_redis.config_resetstat()
    got = await scripts.fetch("p", 1, 8, [("first", 0)], 2)
    stats = await own_redis.info("commandstats")
    assert got is not None
    assert "cmdstat_hget" not in stats
    assert [f.id for f in got] == [i for i in ids if i != ids[4]]
    assert [f.suspect for f in got] == [f.id == ids[1] for f in got]


async def test_a_recovery_count_that_is_not_a_number_counts_as_none(
    redis: Redis, namespace: str
) -> None:
    """A job's count of take-backs from dead pools written by hand as a non-number: the fetch
    takes it as a job never taken back. It raised ("attempt to compare number with nil") in every
    fetch that met it with isolation on, after the jobs of the queues before were taken: in
    progress, and nobody told."""
    keys = Keys(namespace)
    scripts = await _ready(redis, namespace)
    job = await Enqueuer(redis, namespace=namespace, strict=None).enqueue("second")
    assert job is not None
    await redis.hset(keys.recoveries, job.id, "many")
    got = await scripts.fetch("p", 1, 10, [("first", 0), ("second", 0)], 2)
    assert got is not None
    assert [(f.queue_index, f.suspect) for f in got] == [(1, False), (1, False), (2, False)]
