"""fetch.lua and ack.lua meet every key of theirs of another type before their first write with
an errands error reply naming it (lib/types.lua's wrong_key: ``WRONGTYPE <key> holds another
type: nothing fetched``), never Redis' own ``WRONGTYPE Operation against a key holding the wrong
kind of value``, which names no key; a key of job name ``first``'s own (its queue, its limits'
keys, its idle set) skips that name in a fetch instead, the key named in the reply; in an ack
(its history, queue, partition keys) it leaves that name's jobs alone as unfit. Each key of
a call is set to a string in turn, in a namespace where the call touches all of them (unique
locks and dedup keys held, partitions, a rate, listeners, recovered jobs with isolation on,
hand-offs): the call is refused naming that key and writes nothing, or it takes a key of any
type (the listening hash is read with pcall, the done records and the hand-off arming key are
SET over any type). By EVALSHA and by FCALL (the scripts as Redis Functions, store/fnlib.py)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from errands import Enqueuer
from errands.dedup import Dedup
from errands.store.fetchcall import queue_keys
from errands.store.hotcalls import WorkerScripts
from errands.store.keys import Keys
from errands.store.records import Acked
from errands.store.scripts import Arg, Scripts
from tests.support.resend import snapshot

SPECS = {"first": "c=1;r=100/60000"}


async def _namespace(redis: Redis, functions: bool) -> tuple[str, Scripts]:
    """A namespace whose fetch of ``first`` touches each of its keys, and its scripts."""
    namespace = "t" + uuid.uuid4().hex[:12]
    async with Enqueuer(redis, namespace=namespace, strict=None) as enqueuer:
        await enqueuer.enqueue_many([("first", {}, {"partition": "a"}) for _ in range(2)])
        await enqueuer.enqueue("first", {})
        await enqueuer.enqueue("first", {"x": 1}, dedup=Dedup("k"))
        await enqueuer.enqueue_unique("first", {"u": 1})
        await enqueuer.enqueue_unique("other", {"u": 2})  # (its lock held while others end)
        await enqueuer.enqueue("other", {"x": 2}, dedup=Dedup("k2"))
    keys = Keys(namespace)
    await redis.hset(keys.listening, "*", "9999999999999")
    first = (await redis.zrange(keys.queue("first"), 0, 0))[0]
    await redis.hset(keys.recoveries, first, "1")
    scripts = WorkerScripts(redis, keys) if functions else Scripts(redis, keys)
    await scripts.heartbeat("p", b"{}", 60_000, mode="register")
    return namespace, scripts


async def _fetch(scripts: Scripts) -> Any:
    return await scripts.fetch("p", 1, 10, [("first", 0)], 2, specs=SPECS, handoffs=True)


async def _call_of(script: str, scripts: Scripts) -> Callable[[], Awaitable[Any]]:
    """The call of ``script`` to make (an ack: of the jobs a fetch took first)."""
    if script == "fetch":
        return lambda: _fetch(scripts)
    got = await _fetch(scripts)
    assert got is not None and len(got) == 4  # (one partition at a time: c=1)
    done = [Acked(f.id, "first", b"1", 1, 60_000, 1, f.token) for f in got]
    return lambda: scripts.ack_report("p", done, True, 2, True)


def _recorded(scripts: Scripts) -> list[Sequence[str]]:
    """The keys of each script call ``scripts`` makes from now on (a pool's fetch and ack, sent
    packed by their packers: the keys of the lists they pack as pack_call would,
    tests/store/test_hotpack.py)."""
    calls: list[Sequence[str]] = []
    if isinstance(scripts, WorkerScripts):
        hot = scripts._hot

        async def recording_hot(name: str, pack: Any, request: Any) -> Any:
            calls.append(request()[0])
            return await hot(name, pack, request)

        scripts._hot = recording_hot  # type: ignore[method-assign]
        return calls
    call = scripts._call

    async def recording(name: str, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        calls.append(list(keys))
        return await call(name, keys, args)

    scripts._call = recording  # type: ignore[method-assign]
    return calls


@pytest.mark.parametrize("functions", [False, True], ids=["evalsha", "fcall"])
@pytest.mark.parametrize("script", ["fetch", "ack"])
async def test_every_key_of_another_type_is_named(
    redis: Redis, script: str, functions: bool
) -> None:
    outcome = "nothing fetched" if script == "fetch" else "nothing acknowledged"
    model_namespace, model = await _namespace(redis, functions)
    call = await _call_of(script, model)
    calls = _recorded(model)
    await call()
    if isinstance(model, WorkerScripts):
        await model.aclose()
    taken, raw = [], []
    for j, model_key in enumerate(calls[0]):
        namespace, scripts = await _namespace(redis, functions)
        call = await _call_of(script, scripts)
        key = model_key.replace(model_namespace, namespace)
        await redis.delete(key)
        await redis.set(key, "x")
        named = (f"WRONGTYPE {key} holds another type: {outcome}",
                 f"errands: {key} holds x, not a counter: {outcome}")  # fmt: skip
        before = await snapshot(redis, namespace)
        try:
            got = await call()
            taken.append(key.split("}:")[1].split(":")[0])
            if script == "fetch" and key in own_keys(namespace):  # its name skipped, named
                assert got.skipped_keys == {"first": key}
            if script == "ack" and _kind(key) in ACK_OWN:  # its name's jobs left alone
                assert await redis.get(key) == b"x", key
        except ResponseError as exc:
            if not str(exc).startswith(named):
                raw.append(f"KEYS[{j + 1}] {key}: {str(exc)[:60]}")
            assert await snapshot(redis, namespace) == before, key
        finally:
            if isinstance(scripts, WorkerScripts):
                await scripts.aclose()
    assert not raw, raw
    own = {k.split("}:")[1].split(":")[0] for k in own_keys(model_namespace)}
    assert set(taken) == (
        {"listening", "done"} | ACK_OWN if script == "ack" else {"listening", "hoarm"} | own
    )


# a job name's own keys in an ack (of another type: its jobs left alone as unfit, the other
# names' acknowledged: tests/store/test_ack_name_keys.py)
ACK_OWN = {"hist", "q", "prun", "pq", "pready"}


def _kind(key: str) -> str:
    """What ``key`` is: its part after the namespace, before its name."""
    return key.split("}:")[1].split(":")[0]


def own_keys(namespace: str) -> list[str]:
    """The keys of job name ``first`` in a fetch (of another type: the name skipped, the others
    served: tests/limits/test_name_keys_skipped.py)."""
    return queue_keys(Keys(namespace), "first")
