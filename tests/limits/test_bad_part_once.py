"""Within one fetch, a partition whose running count is not a counter is passed over once: one
triple in the reply, one line in the Redis log, its turn moved behind the others once (one
``INCR seq``), and not looked at again in the call. (It was met again each round while the
call's budget lasted: with batch 100, 415 triples in the reply and ``seq`` up by 415; the
healthy partitions were served all the same.)"""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis

from errands.store.fetchcall import FetchCall, fetch_skipped
from errands.store.keys import Keys
from errands.store.scripts import Scripts
from tests.limits.test_fetch_corrupt import server_log
from tests.support.ready import ready_to_fetch


async def _fetch(scripts: Scripts, batch: int, isolate: int = 0) -> tuple[list[Any], list[str]]:
    """One fetch of `work` (c=1 per partition) by pool p: the raw reply's triples (name,
    partition, value, ...) of the partitions passed over, and the ids of the jobs taken."""
    call = FetchCall("p", 0, batch, [("work", 0)], isolate, 0, 10_000, {"work": "c=1"}, 3_000,
                     None, None)  # fmt: skip
    flat = await scripts._fetch_call(call)
    end = fetch_skipped(flat)[0]
    triples = [] if end == len(flat) else flat[-1][-1]
    return [x.decode() for x in triples], [flat[i + 1].decode() for i in range(4, end, 5)]


async def _seq(redis: Redis, keys: Keys) -> int:
    return int(await redis.get(keys.seq) or 0)


@pytest.mark.parametrize(("jobs", "batch", "isolate"), [(200, 100, 0), (3, 10, 0), (3, 10, 2)])
async def test_a_bad_partition_is_passed_over_once_per_fetch(
    redis: Redis, namespace: str, jobs: int, batch: int, isolate: int
) -> None:
    """(isolate: with isolation on, the partitions held are kept apart from those passed over)"""
    keys = Keys(namespace)
    items: list[Any] = [("work", {}, {"partition": "a"}) for _ in range(jobs)]
    items += [("work", {}, {"partition": "b", "job_id": f"b{i}"}) for i in range(3)]
    scripts = await ready_to_fetch(redis, namespace, items)
    await redis.hset(keys.partitions_running("work"), "a", "x")  # type: ignore[misc]
    before = await _seq(redis, keys)
    triples, taken = await _fetch(scripts, batch, isolate)
    assert triples == ["work", "a", "x"]
    assert taken == ["b0"]  # the healthy partition served (one at a time: c=1)
    # one turn for a, one block of turns (the batch) for the partitions served
    assert await _seq(redis, keys) - before <= batch + 1
    before = await _seq(redis, keys)
    triples, taken = await _fetch(scripts, batch, isolate)  # b busy: a alone met, once
    assert triples == ["work", "a", "x"] and taken == []
    assert await _seq(redis, keys) - before == 1


async def test_a_bad_partition_alone_costs_one_turn_and_one_log_line(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    items: list[Any] = [("work", {}, {"partition": "a"}) for _ in range(50)]
    scripts = await ready_to_fetch(redis, namespace, items)
    await redis.hset(keys.partitions_running("work"), "a", "x")  # type: ignore[misc]
    line = f"{keys.partitions_running('work')} field a holds x, not a counter"
    logged = (await server_log(redis)).count(line)
    before = await _seq(redis, keys)
    triples, taken = await _fetch(scripts, 100)
    assert triples == ["work", "a", "x"] and taken == []
    assert await _seq(redis, keys) - before == 1
    assert (await server_log(redis)).count(line) - logged == 1
    assert await redis.zscore(keys.partitions_ready("work"), "a") == before + 1  # moved back
