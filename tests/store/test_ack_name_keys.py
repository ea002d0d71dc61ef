"""One job name's own key of another type (its history, its queue, a key of its partitions:
written by hand, a bad restore) leaves that name's jobs alone as unfit in an ack call, nothing of
them written, while the other names' jobs of the call are acknowledged; re-sent, the call leaves
them alone again; once the key is repaired, they are acknowledged. (ack.lua failed the whole
call: no job of any name was acknowledged until the key was repaired.)"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from redis.asyncio import Redis

from errands import Dedup, Enqueuer
from errands.store.keys import Keys
from errands.store.scripts import Acked, Scripts

POOL = "p1"
SPEC = {"bad": "c=2"}  # (bad's jobs go in partitions: its partition keys are written)

KEYS_OF: dict[str, Callable[[Keys, str], str]] = {
    "history": Keys.history_of,
    "queue": Keys.queue,
    "partitions running": Keys.partitions_running,
    "partition queue": Keys.partition_queue,
    "partitions ready": Keys.partitions_ready,
}


async def _fetched(redis: Redis, keys: Keys, which: str) -> tuple[Scripts, list[Acked]]:
    """Two jobs of `good` and two of `bad` fetched by POOL (bad's in partitions; with a dedup
    key for the queue: only then does an ack write it)."""
    scripts = Scripts(redis, keys)
    dedup = Dedup("k", until="finished") if which == "queue" else None
    async with Enqueuer(redis, namespace=keys.namespace, strict=None) as enq:
        for i in range(2):
            await enq.enqueue("good", {}, job_id=f"g{i}")
            await enq.enqueue("bad", {}, job_id=f"b{i}", partition=f"p{i}", dedup=dedup)
            dedup = None
    now = await scripts.heartbeat(POOL, b"{}", 600_000, "register")
    got = await scripts.fetch(POOL, now, 10, [("good", 0), ("bad", 0)], specs=SPEC)
    assert got is not None and len(got) == 4
    names = ["good", "bad"]
    return scripts, [
        Acked(f.id, names[f.queue_index - 1], b"1", now, 60_000, 1, f.token) for f in got
    ]


@pytest.mark.parametrize("which", list(KEYS_OF))
async def test_the_other_names_jobs_are_acknowledged(
    redis: Redis, namespace: str, which: str
) -> None:
    keys = Keys(namespace)
    scripts, acks = await _fetched(redis, keys, which)
    key = KEYS_OF[which](keys, "bad")
    await redis.delete(key)
    await redis.set(key, "x")
    for _ in range(2):  # (the second: a re-send, or the parked acks sent again)
        report = await scripts.ack_report(POOL, acks, False, 5_000, True)
        assert (sorted(report.unfit), report.refused) == (["b0", "b1"], [])
        assert await redis.zrange(keys.in_progress(POOL), 0, -1) == [b"b0:bad", b"b1:bad"]
        assert await redis.hget(keys.running, "good") == b"0"
        assert await redis.hget(keys.running, "bad") == b"2"
        assert int(await redis.hget(keys.stats, "processed") or 0) == 2
        assert await redis.hexists(keys.jobs, "b0") and await redis.hexists(keys.attempts, "b0")
        assert await redis.zcard(keys.history_of("good")) == 2
        assert await redis.get(key) == b"x"  # (left as it is)
    await redis.delete(key)  # repaired
    report = await scripts.ack_report(POOL, acks, False, 5_000, True)
    assert (report.unfit, report.refused) == ([], [])
    assert await redis.zcard(keys.in_progress(POOL)) == 0
    assert await redis.hget(keys.running, "bad") == b"0"
    assert int(await redis.hget(keys.stats, "processed") or 0) == 4


async def test_a_shared_key_of_another_type_still_fails_the_call(
    redis: Redis, namespace: str
) -> None:
    """Not a name's own key (the history's data, which every name's history writes): the call
    fails before its first write, naming it, as before."""
    keys = Keys(namespace)
    scripts, acks = await _fetched(redis, keys, "history")
    await redis.set(keys.history_data, "x")
    with pytest.raises(Exception, match="histdata holds another type: nothing acknowledged"):
        await scripts.ack_report(POOL, acks, False, 5_000, True)
    assert await redis.zcard(keys.in_progress(POOL)) == 4
