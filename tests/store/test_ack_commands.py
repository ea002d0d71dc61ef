"""ack.lua on the common path (no partitions, workflows, dedup jobs, listeners or unique locks)
sends few commands besides the per-job SET of the done record: one EXISTS for the three
optional features and the hashes most calls find absent (dedup_of_job, unique_of_job, and those
forget HDELs but jobs, attempts and errors: not asked again while none exists), the counters'
HMGETs in place of their HLEN type checks, and no HDEL of a hash that is absent (70 commands for
32 jobs before, 58 then, 51 now)."""

from __future__ import annotations

from redis.asyncio import Redis

from errands import Enqueuer
from errands.store.keys import Keys
from errands.store.scripts import Acked, Scripts
from tests.support.commandstats import command_calls


async def _fetched(redis: Redis, namespace: str, n: int) -> tuple[Keys, Scripts, int, list[Acked]]:
    """n jobs of "work" enqueued and fetched by pool "p": their acks, ready to send."""
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    async with Enqueuer(redis, namespace=namespace) as enqueuer:
        await enqueuer.enqueue_many([("work", {"i": i}) for i in range(n)])
    now = await scripts.heartbeat("p", b"{}", 60_000, "register")
    got = await scripts.fetch("p", now, n, [("work", 0)])
    assert got is not None and len(got) == n
    return keys, scripts, now, [Acked(f.id, "work", b"1", now, 86_400_000, 1, f.token) for f in got]


async def test_an_ack_on_the_common_path_sends_one_exists_and_no_needless_hdel(
    own_redis: Redis, namespace: str
) -> None:
    keys, scripts, now, done = await _fetched(own_redis, namespace, 32)
    await own_redis.config_resetstat()
    assert await scripts.ack("p", done, False, now, True) == []
    sent = await command_calls(own_redis)
    for other in ("evalsha", "eval", "script|load", "config|resetstat"):
        sent.pop(other, None)
    assert (sent["exists"], sent["hdel"], sent["set"]) == (1, 2, 32)  # (jobs and attempts)
    assert sum(sent.values()) == 51
    assert await own_redis.hlen(keys.jobs) == 0 and await own_redis.hlen(keys.attempts) == 0
    assert await own_redis.zcard(keys.in_progress("p")) == 0


async def test_the_in_progress_entries_are_read_whole_while_the_set_is_small(
    own_redis: Redis, namespace: str
) -> None:
    """ack.lua reads the pool's in-progress entries with one ZRANGE of the whole set while it
    holds at most twice as many members as the jobs acknowledged (each ZMSCORE lookup scans a
    small set), else with ZMSCORE: the same verdicts either way (an entry not in the set leaves
    its job alone as unfit), and the entries of the jobs acknowledged are removed."""
    keys, scripts, now, done = await _fetched(own_redis, namespace, 12)
    in_progress = keys.in_progress("p")
    # 4 jobs of a set of 11 (one entry gone): ZMSCORE; then 8 of 7 (one more gone): ZRANGE
    left = len(done)  # (attempts: the unfit keep theirs)
    for batch, read, other in ((done[:4], "zmscore", "zrange"), (done[4:], "zrange", "zmscore")):
        assert await own_redis.zrem(in_progress, f"{batch[0].id}:work") == 1
        await own_redis.config_resetstat()
        report = await scripts.ack_report("p", batch, False, now, True)
        sent = await command_calls(own_redis)
        assert (sent.get(read), sent.get(other)) == (1, None), sent
        assert report.unfit == [batch[0].id] and report.refused == []
        left -= len(batch) - 1
        assert await own_redis.hlen(keys.attempts) == left
    assert await own_redis.zcard(in_progress) == 0
