"""One dedup key of a job name enqueued in several modes (a deploy that changes a ``Dedup``, or
two call sites): what a duplicate does is what its own mode says, against the holder as it is
(waiting, or started); a waiting holder that takes a duplicate's envelope (debounce,
rerun_latest) takes its mode too, as its envelope records it (``x``), so that it holds the key
as that enqueue asked and a run again by hand retakes it in that mode. A throttle window and a
held key are apart: a throttled enqueue looks at its window only, the other modes at the held
key only. docs/dedup.md, "One key, several modes"."""

from __future__ import annotations

import time

import orjson
import pytest
from redis.asyncio import Redis

from errands import Client, Dedup, Enqueuer
from errands.store.keys import Keys
from tests.support.invariants import assert_invariants, check_invariants

MODES = {
    "s": Dedup("k"),
    "d": Dedup("k", debounce=True),
    "f": Dedup("k", until="finished"),
    "r": Dedup("k", until="finished", rerun_latest=True),
    "t": Dedup("k", throttle=3600),
}
KEY = "x:k"


def expected(held: str, state: str, mode: str) -> str:
    """What an enqueue in ``mode`` answers while a job enqueued in ``held`` is in ``state``."""
    if "t" in (held, mode):  # (a window and a held key are apart)
        return "dropped" if held == mode else "enqueued"
    if state == "waiting":
        return "replaced" if mode in "dr" else "dropped"
    if held in "sd":  # (its start freed the key)
        return "enqueued"
    return "rerun_queued" if mode == "r" else "dropped"


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("state", ["waiting", "started"])
@pytest.mark.parametrize("held", sorted(MODES))
async def test_a_duplicate_in_another_mode(
    redis: Redis,
    namespace: str,
    client: Client,
    enqueuer: Enqueuer,
    held: str,
    state: str,
    mode: str,
) -> None:
    keys = Keys(namespace)
    first = await enqueuer.enqueue("x", {"a": 1}, dedup=MODES[held])
    assert first is not None and first.dedup is not None and first.dedup.enqueued
    if state == "started":
        await client.scripts.heartbeat("ghost", b"{}", 60_000, mode="register")
        assert await client.scripts.fetch("ghost", int(time.time() * 1000), 1, [("x", 0)])
    dup = await enqueuer.enqueue("x", {"a": 2}, dedup=MODES[mode])
    assert dup is not None and dup.dedup is not None
    status = expected(held, state, mode)
    assert dup.dedup.status == status
    if status == "replaced":  # it holds the key as the enqueue whose envelope it took asked
        assert dup.id == first.id
        assert await redis.hget(keys.dedup_of_job, first.id) == f"{mode}{KEY}".encode()
        raw = await redis.hget(keys.jobs, first.id)
        assert raw is not None and orjson.loads(raw)["x"] == f"{mode}k"
    await assert_invariants(redis, namespace)


@pytest.mark.parametrize(("held", "mode"), [("f", "d"), ("s", "r"), ("r", "d"), ("d", "r")])
async def test_the_holder_holds_as_the_envelope_it_took_asks(
    redis: Redis, namespace: str, client: Client, enqueuer: Enqueuer, held: str, mode: str
) -> None:
    """A waiting ``f`` holder given a debounce's envelope holds until started (its start frees
    the key); an ``s`` holder given a rerun_latest's holds until finished (a rerun_latest
    duplicate then waits as its rerun)."""
    keys = Keys(namespace)
    first = await enqueuer.enqueue("x", {"a": 1}, dedup=MODES[held])
    dup = await enqueuer.enqueue("x", {"a": 2}, dedup=MODES[mode])
    assert first is not None and dup is not None and dup.dedup is not None
    assert dup.dedup.status == "replaced"
    await client.scripts.heartbeat("ghost", b"{}", 60_000, mode="register")
    assert await client.scripts.fetch("ghost", int(time.time() * 1000), 1, [("x", 0)])
    after = await enqueuer.enqueue("x", {"a": 3}, dedup=MODES["r"])
    assert after is not None and after.dedup is not None
    assert after.dedup.status == ("rerun_queued" if mode == "r" else "enqueued")
    if mode == "d":
        assert await redis.hget(keys.dedup, KEY) == after.id.encode()
    await assert_invariants(redis, namespace)


async def test_the_checker_finds_a_holder_whose_envelope_records_another_mode(
    redis: Redis, namespace: str, enqueuer: Enqueuer
) -> None:
    """What a run again by hand would retake (the envelope's ``x``) is what the job holds."""
    keys = Keys(namespace)
    first = await enqueuer.enqueue("x", {"a": 1}, dedup=MODES["s"])
    assert first is not None
    await assert_invariants(redis, namespace)
    raw = await redis.hget(keys.jobs, first.id)
    assert raw is not None
    await redis.hset(keys.jobs, first.id, raw.replace(b'"x":"sk"', b'"x":"dk"'))
    found = [v.detail for v in (await check_invariants(redis, namespace)).violations]
    assert found == [f"dedup record {first.id} -> s{KEY}: its envelope says 'dk'"]
