"""promote.lua with a job name one of whose own keys (its queue, scheduled set, retry set,
partition queue, partitions ready or idle pools) holds another type (written by hand, a bad
restore): that name is left alone (none of its jobs moved, nothing of it written, its due time
not counted in the earliest), its key named in the reply (`Promoted.left`); the other names'
due jobs are moved. Once the key is repaired, the next call moves its jobs. (The whole call
failed with WRONGTYPE: no due job of any name was moved until the repair.)"""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from errands import Enqueuer
from errands.store.keys import Keys
from errands.store.scripts import Scripts

FAMILIES = ["queue", "retry", "partition_queue", "partitions_ready", "idle_for"]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("bad", ["first", "second"])
async def test_a_name_with_a_key_of_another_type_is_left_alone(
    redis: Redis, namespace: str, family: str, bad: str
) -> None:
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    ids: dict[str, list[str]] = {}
    async with Enqueuer(redis, namespace=namespace) as enqueuer:
        for name in ("first", "second"):
            for part in ("a", None):
                job = await enqueuer.enqueue(name, delay=1, partition=part)
                assert job is not None
                ids.setdefault(name, []).append(job.id)
    good = "second" if bad == "first" else "first"
    key = getattr(keys, family)(bad)
    await redis.set(key, "x")
    now_ms = (int((await redis.time())[0]) + 60) * 1000
    for _ in range(2):  # (sent again: the same)
        done = await scripts.promote_report(["first", "second"], now_ms, 100)
        assert done.left == {bad: key} and done.earliest == -1
    assert done.moved == 0  # (the second call: good's went with the first)
    assert sorted(await redis.zrange(keys.queue(good), 0, -1)) == sorted(
        i.encode() for i in ids[good]
    )
    assert await redis.get(key) == b"x"
    assert sorted(await redis.zrange(keys.scheduled(bad), 0, -1)) == sorted(
        i.encode() for i in ids[bad]
    )
    await redis.delete(key)  # repaired
    done = await scripts.promote_report(["first", "second"], now_ms, 100)
    assert done.moved == 2 and done.left == {}
    assert await redis.zcard(keys.scheduled(bad)) == 0
    assert sorted(await redis.zrange(keys.queue(bad), 0, -1)) == sorted(
        i.encode() for i in ids[bad]
    )


async def test_a_name_left_alone_is_not_counted_in_the_earliest_due_time(
    redis: Redis, namespace: str
) -> None:
    """bad's scheduled job is due first, but its queue holds another type: the earliest due
    time is good's (counting bad's, always past, would have the requeuer call again at once)."""
    keys = Keys(namespace)
    async with Enqueuer(redis, namespace=namespace) as enqueuer:
        await enqueuer.enqueue("bad", delay=10)
        await enqueuer.enqueue("good", delay=100)
    await redis.set(keys.queue("bad"), "x")
    now_ms = (int((await redis.time())[0]) + 50) * 1000
    done = await Scripts(redis, keys).promote_report(["bad", "good"], now_ms, 100)
    assert done.moved == 0 and done.left == {"bad": keys.queue("bad")}
    assert done.earliest > now_ms
