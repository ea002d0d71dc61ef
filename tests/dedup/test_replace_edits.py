"""A waiting job that takes a later enqueue's envelope (debounce, rerun_latest: lib/dedup.lua
dedup_replace) keeps its count of edits ("e", Client.update_job): its edits' history records
"<id>:e<n>" stay, its next edit is numbered after them and destroy erases them. The count goes
into the new envelope as "e":<n> before its closing brace, the request's other bytes kept (lib/
edits.lua with_edits); a count the holder's envelope does not tell (not a whole number > 0, not
JSON) is none, as destroy.lua and Client.update_job read it. The debounce paths:
tests/admin/test_dedup_edit_counts.py."""

from __future__ import annotations

import asyncio
import os

import orjson
from redis.asyncio import Redis

from errands import Client, Dedup, Enqueuer, Job, WorkerPool
from errands.store.keys import Keys
from tests.support.client_env import traces
from tests.support.invariants import assert_invariants


async def edit_records(redis: Redis, keys: Keys, job_id: str) -> list[str]:
    fields = [f.decode() for f in await redis.hkeys(keys.history_data)]
    return sorted(f for f in fields if f.startswith(f"{job_id}:e"))


async def test_a_waiting_rerun_replaced_keeps_its_edits(
    redis: Redis, redis_url: str, namespace: str, enqueuer: Enqueuer, client: Client
) -> None:
    """The rerun waiting for a running holder, edited, takes the next enqueue's envelope
    ('rerun_queued'): it still counts its edit, the next edit is e2 (e1 kept), destroy erases
    both."""
    keys = Keys(namespace)
    started, release = asyncio.Event(), asyncio.Event()
    pool = WorkerPool.from_url(redis_url, namespace=namespace)

    @pool.job("deploy")
    async def deploy(job: Job, sha: str) -> None:
        started.set()
        await release.wait()

    d = Dedup("repo:x", until="finished", rerun_latest=True)
    async with pool:
        try:
            rerun_id = await edited_replaced_edited(enqueuer, client, started, d)
            assert await edit_records(redis, keys, rerun_id) == [f"{rerun_id}:e1", f"{rerun_id}:e2"]
            assert await client.destroy(rerun_id) is True
            assert await edit_records(redis, keys, rerun_id) == []
        finally:  # (the holder ends: the pool stops without its 30 s wait)
            release.set()
        await pool.drain(timeout=10)
    assert [k for k in await traces(redis, namespace, rerun_id) if ":reply:" not in k] == []
    await assert_invariants(redis, namespace, drained=True)


async def edited_replaced_edited(
    enqueuer: Enqueuer, client: Client, started: asyncio.Event, d: Dedup
) -> str:
    """The rerun waiting for the running holder: edited, given the next enqueue's envelope,
    edited again; its id."""
    await enqueuer.enqueue("deploy", {"sha": "a"}, dedup=d)
    async with asyncio.timeout(10):
        await started.wait()
    rerun = await enqueuer.enqueue("deploy", {"sha": "b"}, dedup=d)
    assert rerun is not None and rerun.dedup is not None
    assert rerun.dedup.status == "rerun_queued"
    await client.update_job(rerun.id, args={"sha": "b2"})
    again = await enqueuer.enqueue("deploy", {"sha": "c"}, dedup=d)
    assert again is not None and again.dedup is not None
    assert (again.dedup.status, again.id) == ("rerun_queued", rerun.id)
    info = await client.job(rerun.id)
    assert info is not None and (info.args, info.edits) == ({"sha": "c"}, 1)
    info = await client.update_job(rerun.id, args={"sha": "c2"})
    assert info.edits == 2
    return rerun.id


async def test_a_rerun_latest_holder_replaced_before_its_start_keeps_its_edits(
    redis: Redis, namespace: str, enqueuer: Enqueuer, client: Client
) -> None:
    """An until-finished holder that has not started takes a rerun_latest enqueue's envelope
    ('replaced'): its edit stays counted and recorded."""
    keys = Keys(namespace)
    d = Dedup("repo:y", until="finished", rerun_latest=True)
    job = await enqueuer.enqueue("deploy", {"sha": "a"}, dedup=d, delay=60)
    assert job is not None
    await client.update_job(job.id, args={"sha": "a2"}, priority=2)
    again = await enqueuer.enqueue("deploy", {"sha": "b"}, dedup=d, delay=60)
    assert again is not None and again.dedup is not None
    assert (again.dedup.status, again.id) == ("replaced", job.id)
    info = await client.job(job.id)
    assert info is not None and (info.args, info.priority, info.edits) == ({"sha": "b"}, 0, 1)
    await client.update_job(job.id, args={"sha": "b2"})
    edits = [h for h in await client.history_job(job.id) if h.status == "edited"]
    assert len(edits) == 2
    assert await edit_records(redis, keys, job.id) == [f"{job.id}:e1", f"{job.id}:e2"]
    await assert_invariants(redis, namespace)


# an envelope as enqueue_dedup receives it, with what a re-encoding would change: a time with
# 17 significant digits (cjson writes 14), a key "e" inside the args, a slash and a non-ASCII
# letter as orjson writes them
REQUEST = b'{"n":"work","a":{"e":7,"s":"a/b","u":"\xc3\xa9"},"t":1765110000.1234567}'


def new_id() -> str:
    return os.urandom(8).hex()


async def replaced(redis: Redis, enqueuer: Enqueuer, holder_env: bytes, request: bytes) -> bytes:
    """The envelope stored for a debounced holder whose envelope was ``holder_env`` once an
    enqueue of its key brought ``request``."""
    keys, scripts, holder, key = enqueuer.keys, enqueuer.scripts, new_id(), f"work:{new_id()}"
    first = await scripts.enqueue_dedup("work", holder, b'{"n":"work","a":{}}', 0, 0, "d", key, 0)
    assert first == ("enqueued", holder, holder)
    await redis.hset(keys.jobs, holder, holder_env)
    again = await scripts.enqueue_dedup("work", new_id(), request, 0, 0, "d", key, 0)
    assert again == ("replaced", holder, holder)
    stored = await redis.hget(keys.jobs, holder)
    assert stored is not None
    return bytes(stored)


async def test_the_count_goes_into_the_request_envelope_its_bytes_kept(
    redis: Redis, enqueuer: Enqueuer
) -> None:
    stored = await replaced(redis, enqueuer, b'{"n":"work","a":{},"e":3}', REQUEST)
    assert stored == REQUEST[:-1] + b',"e":3}'
    assert orjson.loads(stored)["e"] == 3
    stored = await replaced(redis, enqueuer, b'{"n":"work","a":{},"e":4}', b"{} \n")
    assert stored == b'{"e":4} \n'


async def test_only_a_count_the_holder_tells_is_carried(redis: Redis, enqueuer: Enqueuer) -> None:
    """A whole number > 0, as destroy.lua reads it (Client.update_job refuses a job whose "e" is
    not a whole number, as corrupt): anything else adds nothing, the request is stored as sent."""
    untold = [
        b'{"n":"work","a":{},"e":"x"}',
        b'{"n":"work","a":{},"e":-1}',
        b'{"n":"work","a":{},"e":1.5}',
        b'{"n":"work","a":{},"e":0}',
        b'{"n":"work","a":{},"e":null}',
        b'{"n":"work","a":{},"e":{"e":2}}',
        b'{"n":"work","a":{"e":2}}',  # (an "e" in the args only)
        b"\x83\xa1n\xa4work\xa1e\x02",  # not JSON (another serializer's)
        b'{"n":"work","a":{},"e":2',  # cut short
    ]
    for holder in untold:
        assert await replaced(redis, enqueuer, holder, REQUEST) == REQUEST, holder
    told = await replaced(redis, enqueuer, b'{"n":"work","a":{"e":5},"e":2}', REQUEST)
    assert told == REQUEST[:-1] + b',"e":2}'


async def test_a_request_that_is_not_a_json_object_without_a_count_is_stored_as_sent(
    redis: Redis, enqueuer: Enqueuer
) -> None:
    holder = b'{"n":"work","a":{},"e":3}'
    for request in [
        b'{"n":"work","a":{},"e":9}',  # counts edits itself (errands' enqueues send none)
        b"\x82\xa1n\xa4work\xa1a\x80",  # not JSON
        b'["work",{}]',  # JSON, not an object
    ]:
        assert await replaced(redis, enqueuer, holder, request) == request, request
    assert await replaced(redis, enqueuer, holder, b'{"n":"work","a":{}}') == (
        b'{"n":"work","a":{},"e":3}'
    )
