"""Re-sent calls (redis-py sends a script call again, the same KEYS and ARGV, when the reply to
the first send is lost) of the scripts that give their args to another job: enqueue_dedup.lua's
``replaced`` and ``rerun_queued`` (debounce, rerun_latest) and replace_envelope.lua
(``Enqueuer.enqueue_unique(key=...)``). That job started (or ended) between the sends: the
re-send found the dedup key free (or its holder running, or the unique lock free) and stored a
second job with the same args, which ran twice. Each re-send now answers as its first and
writes nothing."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from errands import Dedup, Enqueuer
from errands.store.keys import Keys
from errands.store.records import Acked, Fetched
from errands.store.scripts import Scripts
from tests.support.resend import Recorder, refused, snapshot

NOW = 1_767_225_600_000
POOL = "p1"


async def _world(redis: Redis, namespace: str, script: str) -> tuple[Scripts, Enqueuer, Recorder]:
    scripts = Scripts(redis, Keys(namespace))
    enq = Enqueuer(redis, namespace=namespace)
    enq.scripts = scripts
    rec = Recorder(scripts._s[script])
    scripts._s[script] = rec  # type: ignore[assignment]
    await scripts.heartbeat(POOL, b"{}", 60_000, mode="register")
    return scripts, enq, rec


async def _start(scripts: Scripts, name: str = "report") -> list[Fetched]:
    got = await scripts.fetch(POOL, NOW, 10, [(name, 0)])
    assert got is not None and len(got) == 1
    return list(got)


async def _finish(scripts: Scripts, got: list[Fetched], name: str = "report") -> None:
    done = [Acked(f.id, name, b"1", NOW, 60_000, 1, token=f.token) for f in got]
    assert await scripts.ack(POOL, done, False, NOW, True) == []


async def _args(redis: Redis, keys: Keys) -> list[Any]:
    return sorted(orjson.loads(v)["a"]["v"] for v in (await redis.hgetall(keys.jobs)).values())


@pytest.mark.parametrize("then", ["started", "finished"])
async def test_a_debounce_that_replaced_resent_after_the_holder_started(
    redis: Redis, namespace: str, then: str
) -> None:
    scripts, enq, rec = await _world(redis, namespace, "enqueue_dedup")
    d = Dedup("k", debounce=True)
    holder = await enq.enqueue("report", {"v": 0}, dedup=d)
    assert holder is not None
    await enq.enqueue("report", {"v": 1}, dedup=d)
    first = rec.reply
    assert first == [b"replaced", holder.id.encode(), holder.id.encode()]
    got = await _start(scripts)
    assert orjson.loads(got[0].envelope)["a"] == {"v": 1}
    if then == "finished":
        await _finish(scripts, got)
    before = await snapshot(redis, namespace)
    assert await rec.resend() == first  # (it said enqueued: a second job of v=1)
    assert await snapshot(redis, namespace) == before
    (reply_key,) = [k async for k in redis.scan_iter(match=f"*{namespace}*reply:*")]
    assert 100_000 < await redis.pttl(reply_key) <= 120_000  # (2 minutes: docs/dedup.md)


@pytest.mark.parametrize("then", ["started", "finished"])
async def test_a_rerun_latest_that_replaced_resent_after_the_holder_started(
    redis: Redis, namespace: str, then: str
) -> None:
    scripts, enq, rec = await _world(redis, namespace, "enqueue_dedup")
    d = Dedup("k", until="finished", rerun_latest=True)
    holder = await enq.enqueue("report", {"v": 0}, dedup=d)
    assert holder is not None
    await enq.enqueue("report", {"v": 1}, dedup=d)  # the waiting holder takes v=1
    first = rec.reply
    assert first[0] == b"replaced"
    got = await _start(scripts)
    if then == "finished":
        await _finish(scripts, got)
    before = await snapshot(redis, namespace)
    assert await rec.resend() == first  # (it said rerun_queued: v=1 stored to run again)
    assert await snapshot(redis, namespace) == before
    assert await redis.zcard(Keys(namespace).dedup_reruns) == 0


@pytest.mark.parametrize("then", ["started", "finished"])
async def test_a_rerun_latest_that_replaced_a_rerun_resent_after_the_rerun_started(
    redis: Redis, namespace: str, then: str
) -> None:
    scripts, enq, rec = await _world(redis, namespace, "enqueue_dedup")
    keys = Keys(namespace)
    d = Dedup("k", until="finished", rerun_latest=True)
    assert await enq.enqueue("report", {"v": 0}, dedup=d) is not None
    holder = await _start(scripts)
    await enq.enqueue("report", {"v": 1}, dedup=d)  # the rerun, stored
    rerun = rec.reply[1]
    await enq.enqueue("report", {"v": 2}, dedup=d)  # the rerun takes v=2
    first = rec.reply
    assert first == [b"rerun_queued", rerun, holder[0].id.encode()]
    await _finish(scripts, holder)  # the rerun takes the key and is queued
    got = await _start(scripts)
    assert got[0].id.encode() == rerun
    if then == "finished":
        await _finish(scripts, got)
    before = await snapshot(redis, namespace)
    assert await rec.resend() == first  # (it stored a rerun of v=2 behind the one running it)
    assert await snapshot(redis, namespace) == before
    assert await _args(redis, keys) == ([2] if then == "started" else [])


@pytest.mark.parametrize("then", ["started", "finished"])
async def test_a_new_rerun_resent_after_it_started_answers_rerun_queued(
    redis: Redis, namespace: str, then: str
) -> None:
    """The rerun a first send stored, handed the key and started: the re-send found its job
    and, no longer a waiting rerun, said 'enqueued' (once it ended: 'existed')."""
    scripts, enq, rec = await _world(redis, namespace, "enqueue_dedup")
    d = Dedup("k", until="finished", rerun_latest=True)
    assert await enq.enqueue("report", {"v": 0}, dedup=d) is not None
    holder = await _start(scripts)
    await enq.enqueue("report", {"v": 1}, dedup=d)
    first = rec.reply
    assert first[0] == b"rerun_queued"
    await _finish(scripts, holder)
    got = await _start(scripts)
    if then == "finished":
        await _finish(scripts, got)
    before = await snapshot(redis, namespace)
    assert await rec.resend() == first
    assert await snapshot(redis, namespace) == before


async def test_a_job_id_given_again_in_a_new_call_is_not_a_resend(
    redis: Redis, namespace: str
) -> None:
    """The reply key is per call, not per job id: a later call with the job id of a call that
    replaced (and stored nothing under it) is stored once the key is free."""
    scripts, enq, _rec = await _world(redis, namespace, "enqueue_dedup")
    d = Dedup("k", debounce=True)
    holder = await enq.enqueue("report", {"v": 0}, dedup=d)
    again = await enq.enqueue("report", {"v": 1}, dedup=d, job_id="mine")
    assert holder is not None and again is not None and again.dedup is not None
    assert (again.dedup.status, again.id) == ("replaced", holder.id)
    await _start(scripts)
    later = await enq.enqueue("report", {"v": 2}, dedup=d, job_id="mine")
    assert later is not None and later.dedup is not None
    assert (later.dedup.status, later.id) == ("enqueued", "mine")
    assert await _args(redis, Keys(namespace)) == [1, 2]


@pytest.mark.parametrize("then", ["started", "finished"])
async def test_a_unique_replace_resent_after_the_holder_started(
    redis: Redis, namespace: str, then: str
) -> None:
    """The re-send said 0, Enqueuer.enqueue_unique went round again, found the lock free and
    stored a second job with the same args. (Answering 1 when the stored envelope is the new
    one would not do once the job ended: ack forgets its envelope.)"""
    scripts, enq, rec = await _world(redis, namespace, "replace_envelope")
    keys = Keys(namespace)
    holder = await enq.enqueue_unique("report", {"v": 0}, key="k")
    assert holder is not None
    orig = rec.__call__

    async def lost_reply(keys: Any = (), args: Any = (), client: Any = None) -> Any:
        assert await orig(keys, args) == 1  # it ran; its reply is lost
        got = await _start(scripts)  # meanwhile the holder starts (with v=1)
        assert orjson.loads(got[0].envelope)["a"] == {"v": 1}
        if then == "finished":
            await _finish(scripts, got)
        before = await snapshot(redis, namespace)
        again = await rec.resend()  # redis-py's re-send
        assert await snapshot(redis, namespace) == before
        return again

    scripts._s["replace_envelope"] = lost_reply  # type: ignore[assignment]
    assert await enq.enqueue_unique("report", {"v": 1}, key="k") is None
    assert await _args(redis, keys) == ([1] if then == "started" else [])
    (reply_key,) = [k async for k in redis.scan_iter(match=f"*{namespace}*reply:*")]
    assert 100_000 < await redis.pttl(reply_key) <= 120_000  # (2 minutes: docs/enqueueing.md)


async def test_a_reply_key_holding_something_else_fails_the_call_before_any_write(
    redis: Redis, namespace: str
) -> None:
    scripts, _enq, _rec = await _world(redis, namespace, "enqueue_dedup")
    await redis.set(Keys(namespace).reply("c1"), "garbage")
    before = await snapshot(redis, namespace)
    with pytest.raises(ResponseError, match="holds no answer of this script"):
        await scripts.enqueue_dedup("report", "j1", b"{}", 0, 0, "d", "report:k", 0, call="c1")
    assert await snapshot(redis, namespace) == before


async def test_a_swap_whose_reply_key_holds_another_type_is_refused_by_name(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    await redis.hset(keys.reply("c9"), "x", "y")
    swap = Scripts(redis, keys).replace_envelope("d", "j", b"a", b"b", call="c9")
    await refused(redis, namespace, swap, "reply:c9 holds another type: nothing replaced")
