"""FCALL of the hot scripts' libraries (store/fnlib.py) against EVALSHA of the scripts: the same
replies and the same data, call after call, re-sends included. Every script call of a scenario
goes to two databases of one server (:class:`Twin`): database A runs the script, database B
the same script too, but fetch and ack as their library's function. Redis' clock is pinned:
``redis.call('TIME')`` reads a hash of the test (in both databases) in both the script and the
library, so that both sides see the same time and the library's text stays the same through a
test (one library, called again and again: state a call leaked into the next would show)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from errands.store.fnlib import Library, function_library, script_parts
from errands.store.hotcalls import HOT
from errands.store.keys import Keys
from errands.store.luasource import lua_source
from errands.store.records import Fetched
from errands.store.scripts import Acked, Arg, Scripts
from tests.support.resend import snapshot

POOL = "p0000000000000001"
TIME = "redis.call('TIME')"


class Twin(Scripts):
    """Scripts whose every call runs in databases A (EVALSHA) and B (FCALL for fetch and ack),
    the replies compared; the data too after each call of fetch or ack."""

    def __init__(self, a: Redis, b: Redis, keys: Keys) -> None:
        super().__init__(a, keys)
        self.b = b
        self.clock = keys.prefix + "twin:clock"
        self.now_ms = 1_767_225_600_000
        self.libs: dict[str, Library] = {}
        self.fcalls = 0

    def _pin(self, text: str) -> str:
        return text.replace(TIME, f"redis.call('HMGET', '{self.clock}', 's', 'us')")

    async def _library(self, name: str) -> Library:
        lib = self.libs.get(name)
        if lib is None:
            libs, body = script_parts(name)
            lib = self.libs[name] = function_library(name, self._pin(libs), self._pin(body))
            assert TIME not in lib.text
            await self.b.function_load(lib.text)
        return lib

    async def tick(self, ms: int = 0) -> None:
        """Redis' clock, in both databases, ``ms`` later."""
        self.now_ms += ms
        s, ms_part = divmod(self.now_ms, 1000)
        for db in (self.redis, self.b):
            await db.hset(self.clock, mapping={"s": s, "us": ms_part * 1000 + 217})

    async def _call(self, name: str, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        text = self._pin(lua_source(name))
        a = await _reply(self.redis.eval(text, len(keys), *keys, *args))
        if name in HOT:
            lib = await self._library(name)
            b = await _reply(self.b.fcall(lib.name, len(keys), *keys, *args))
            self.fcalls += 1
        else:
            b = await _reply(self.b.eval(text, len(keys), *keys, *args))
        assert a == b, (name, a, b)
        if name in HOT:
            assert await snapshot(self.redis, self.keys.namespace) == await snapshot(
                self.b, self.keys.namespace
            ), name
        if isinstance(a, tuple):
            raise a[0](a[1])
        return a

    async def aclose(self) -> None:
        for lib in self.libs.values():
            await self.b.function_delete(lib.name)


async def _reply(call: Any) -> Any:
    """The reply, or an error reply as (its class, its text)."""
    try:
        return await call
    except ResponseError as exc:
        return (type(exc), str(exc))


@pytest.fixture
async def twin(redis: Redis, redis_url: str, namespace: str) -> AsyncIterator[Twin]:
    b = Redis.from_url(redis_url.rsplit("/", 1)[0] + "/1")
    t = Twin(redis, b, Keys(namespace))
    await t.tick()
    await t.heartbeat(POOL, b"{}", 600_000, mode="register")
    yield t
    await t.aclose()
    async for key in b.scan_iter(match=t.keys.prefix + "*"):
        await b.delete(key)
    await b.aclose()


def _envelope(id: str, name: str) -> bytes:
    return b'{"id":"%b","name":"%b","args":[],"kwargs":{}}' % (id.encode(), name.encode())


async def _enqueue(t: Twin, names: list[str], n: int, partitions: int = 0, tag: str = "") -> None:
    jobs = [
        (
            1 + i % len(names),
            names[i % len(names)],
            f"j{tag}{i:04d}",
            _envelope(f"j{tag}{i:04d}", names[i % len(names)]),
            i % 3,
            0,
            f"p{i % partitions}" if partitions else "",
        )
        for i in range(n)
    ]
    await t.enqueue(names, jobs)


def _acked(jobs: Sequence[Fetched], name_of: dict[int, str], ttl_ms: int = 60_000) -> list[Acked]:
    return [Acked(j.id, name_of[j.queue_index], b'{"ok":1}', 5, ttl_ms, 1, j.token) for j in jobs]


async def test_plain_fetches_and_acks(twin: Twin) -> None:
    t, queues = twin, [("a", 0), ("b", 5)]
    name_of = {1: "a", 2: "b"}
    await t.redis.set(t.keys.listening, 1)  # (events published: the same either way)
    await t.b.set(t.keys.listening, 1)
    await _enqueue(t, ["a", "b"], 45)
    await t.tick(3)
    got = await t.fetch(POOL, t.now_ms, 21, queues, handoffs=True)
    assert got is not None and len(got) == 21
    await t.tick(2)
    await t.ack(POOL, _acked(list(got)[:15], name_of), True, t.now_ms, True)
    # the same ack sent again (its reply lost), then with a ttl of none and no history
    await t.ack(POOL, _acked(list(got)[:15], name_of), True, t.now_ms, True)
    await t.tick(1)
    await t.ack(POOL, _acked(list(got)[15:], name_of, ttl_ms=0), False, t.now_ms, False)
    # a stale attempt: refused by the fence
    stale = [Acked(got[0].id, "a", b"1", 5, 1000, 1, "99")]
    assert await t.ack(POOL, stale, False, t.now_ms, True) == []  # (ended: a re-send's)
    rest: list[Fetched] = []
    for _ in range(6):  # the rest (b: 5 at a time), then nothing (the pool marked idle)...
        await t.tick(7)
        more = await t.fetch(POOL, t.now_ms, 20, queues, handoffs=True)
        assert more is not None
        rest += list(more)
        await t.ack(POOL, _acked(list(more), name_of), True, t.now_ms, True)
    assert len(rest) == 45 - 21
    assert t.fcalls >= 15


async def test_a_bad_call_fails_the_same(twin: Twin) -> None:
    with pytest.raises(ResponseError, match="not a whole number"):
        await twin.fetch(POOL, twin.now_ms, 10, [("a", "x")])  # type: ignore[list-item]
    with pytest.raises(ResponseError, match="do not fit"):
        await twin._call("ack", [twin.keys.jobs], ["w", "0", "e", "1", "1", "3", POOL])


async def test_rates_partitions_and_concurrency(twin: Twin) -> None:
    """A rate's log read by one fetch (lib/ratelog.lua's LIM_SEEN, per call) is read again by
    the next: the log dropped in between (as when its window passes), the second fetch starts
    jobs again. A library that kept the first call's reading would start none."""
    t = twin
    specs = {"sms": "r=4/60000", "mail": "c=1"}
    queues = [("sms", 0), ("mail", 0)]
    name_of = {1: "sms", 2: "mail"}
    await _enqueue(t, ["sms"], 12, tag="s")
    await _enqueue(t, ["mail"], 12, partitions=3, tag="m")
    await t.tick(5)
    got = await t.fetch(POOL, t.now_ms, 10, queues, specs=specs)
    assert got is not None and len(got) == 4 + 3  # 4 by the rate, 1 per partition
    for db in (t.redis, t.b):
        await db.delete(t.keys.rate_log("sms"))
    await t.tick(1)
    again = await t.fetch(POOL, t.now_ms, 10, queues, specs=specs)
    assert again is not None and len(again) == 4  # (no mail: each partition runs one)
    await t.tick(1)
    await t.ack(POOL, _acked(list(got) + list(again), name_of), True, t.now_ms, True)
    await t.tick(1)
    last = await t.fetch(POOL, t.now_ms, 10, queues, specs=specs)
    assert last is not None and len(last) == 3  # the rate's 4 taken: mail's next turns


async def test_unique_and_dedup_jobs(twin: Twin) -> None:
    t = twin
    for i in range(4):
        id = f"u{i}"
        await t.enqueue_unique("u", id, _envelope(id, "u"), 0, 0, f"d{i % 2}", 60_000, t.now_ms)
        id = f"d{i}"
        await t.enqueue_dedup("d", id, _envelope(id, "d"), 0, 0, "r", f"d:k{i % 2}", 0)
    await t.tick(2)
    got = await t.fetch(POOL, t.now_ms, 10, [("u", 0), ("d", 0)])
    assert got is not None and len(got) == 6  # u0, u1 (one per digest), d0-d3
    await t.tick(2)
    await t.ack(POOL, _acked(list(got), {1: "u", 2: "d"}), False, t.now_ms, True)
    await t.tick(2)
    more = await t.fetch(POOL, t.now_ms, 10, [("u", 0), ("d", 0)])
    assert more is not None
    await t.ack(POOL, _acked(list(more), {1: "u", 2: "d"}), False, t.now_ms, True)
