"""A fetch meeting corrupt limits state (a partition's running count that is not a counter, a
rate log of neither form, a scan cursor that is not a queue score) serves the rest and says so
in the Redis log: it raised in the middle of the call (after the jobs of an earlier queue were
taken), or stored nan as a count."""

from __future__ import annotations

from collections.abc import Awaitable
from pathlib import Path

import pytest
from redis.asyncio import Redis

from errands.enqueuer import EnqueueItem
from errands.store.keys import Keys
from errands.store.scripts import Scripts
from tests.support.ready import ready_to_fetch


async def server_log(redis: Redis) -> str:
    """The text of the Redis server's log file (the tests' own server writes one)."""
    where = await redis.config_get("dir")
    name = (await redis.config_get("logfile"))["logfile"]
    if not name:
        pytest.skip("the server logs to stdout")
    return (Path(where["dir"]) / name).read_text(errors="replace")


def ready(redis: Redis, namespace: str, *jobs: tuple[str, str | None]) -> Awaitable[Scripts]:
    """Jobs (name, partition) enqueued in that order, and pool p1 registered."""
    items: list[EnqueueItem] = [
        (name, {}, {"partition": partition} if partition else {}) for name, partition in jobs
    ]
    return ready_to_fetch(redis, namespace, items, pools=("p1",))


@pytest.mark.parametrize("count", ["x", "1.5", "nan", "007"])
async def test_a_partition_whose_running_count_is_not_a_counter_is_passed_over(
    redis: Redis, namespace: str, count: str
) -> None:
    """'x' raised (the fetch of every job failed), '1.5' took the partition out of the turns
    for good, 'nan' started its job and stored nan + 1."""
    keys = Keys(namespace)
    scripts = await ready(redis, namespace, ("work", "k1"), ("work", "k2"))
    await redis.hset(keys.partitions_running("work"), "k1", count)
    got = await scripts.fetch("p1", 0, 10, [("work", 0)], specs={"work": "c=1"})
    assert got is not None and len(got) == 1
    assert await redis.hget(keys.partitions_running("work"), "k1") == count.encode()
    assert await redis.zscore(keys.partitions_ready("work"), "k1") is not None  # its turn kept
    field = f"{keys.partitions_running('work')} field k1 holds {count}, not a counter"
    assert field in await server_log(redis)
    await redis.hdel(keys.partitions_running("work"), "k1")  # repaired
    again = await scripts.fetch("p1", 0, 10, [("work", 0)], specs={"work": "c=1"})
    assert again is not None and len(again) == 1


@pytest.mark.parametrize("log", ["#abc", "#1", "12", "#" + "0" * 10 + "x" * 23])
async def test_a_rate_log_of_neither_form_is_read_as_empty(
    redis: Redis, namespace: str, log: str
) -> None:
    """The first queue's job was taken, then the second's rate log raised: the job in
    progress with no reply. Read as empty: both taken, the log written anew in form."""
    keys = Keys(namespace)
    scripts = await ready(redis, namespace, ("other", None), ("work", None))
    await redis.hset(keys.rate_log("work"), "60000", log)
    queues = [("other", 0), ("work", 0)]
    got = await scripts.fetch("p1", 0, 10, queues, specs={"work": "r=5/60000"})
    assert got is not None and len(got) == 2
    stored = (await redis.hget(keys.rate_log("work"), "60000") or b"").decode()
    assert stored.startswith("#") and (len(stored) - 11) % 23 == 0
    assert f"{keys.rate_log('work')} field 60000 holds {log}, not a rate log" in (
        await server_log(redis)
    )


@pytest.mark.parametrize("cursor", ["abc", "nan", ""])
async def test_a_scan_cursor_that_is_not_a_score_is_read_as_none(
    redis: Redis, namespace: str, cursor: str
) -> None:
    """The scan past a run of partitioned entries (pscan, a queue score per job name) read a
    cursor written by hand after the call's first write: 'abc' and '' raised comparing it, 'nan'
    was refused by ZRANGEBYSCORE. The job of k1 was then in progress with its attempt and
    partition slot, its `running` slot not taken and no reply: every fetch did it again. Read
    as none: the scan goes on from the head's last entry and writes the cursor anew."""
    keys = Keys(namespace)
    # 12 jobs of a busy partition (one running at most), then one without a partition: past
    # the head's 4 windows (of 2, the room left), found by the scan, which reaches the end
    scripts = await ready(redis, namespace, *[("work", "k1")] * 12, ("work", None))
    await redis.hset(keys.scan_cursor, "work", cursor)
    got = await scripts.fetch("p1", 0, 3, [("work", 0)], specs={"work": "c=1"})
    assert got is not None and len(got) == 2  # k1's head, and the job behind the run
    assert await redis.hget(keys.running, "work") == b"2"
    assert await redis.zcard(keys.in_progress("p1")) == 2
    assert await redis.hget(keys.scan_cursor, "work") is None  # (the scan reached the end)
    assert f"{keys.scan_cursor} field work holds" in await server_log(redis)
