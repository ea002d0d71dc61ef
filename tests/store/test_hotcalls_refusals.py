"""The refusals of a pool's FCALLs and library loads (store/hotcalls.py) that are not for good:
over maxmemory an FCALL is refused as a whole where EVALSHA runs until its first write that may
grow memory (an ack that frees memory must still run); a load refused for a passing reason is
tried again later, not never; and several calls in flight that find the library gone all go
the general way."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from errands.store.fnlib import library
from errands.store.hotcalls import LOAD_RETRY_S, WorkerScripts
from errands.store.keys import Keys
from errands.store.records import Acked
from errands.store.scripts import Fetched
from tests.support.infra.nodes import own_node


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Redis]:
    """A server of the test's own: its maxmemory is set."""
    async with own_node(tmp_path, "fcall-refusals") as client:
        yield client


def _envelope(i: int) -> bytes:
    return b'{"id":"j%d","name":"a","args":[],"kwargs":{}}' % i


async def _fetched(s: WorkerScripts, n: int) -> tuple[int, list[Fetched]]:
    """``n`` jobs of ``a`` enqueued and fetched by pool p1, the first acknowledged (both
    libraries loaded); the others."""
    await s.heartbeat("p1", b"{}", 600_000, mode="register")
    await s.enqueue(["a"], [(1, "a", f"j{i}", _envelope(i), 0, 0, "") for i in range(n)])
    now = (await s.redis_time())[0] * 1000
    got = await s.fetch("p1", now, n, [("a", 0)])
    assert got is not None and len(got) == n
    first = got[0]
    await s.ack("p1", [Acked(first.id, "a", b"1", now, 0, 1, first.token)], False, now, False)
    assert all(s.pinned[name].function == library(name).name.encode() for name in s.pinned)
    return now, list(got[1:])


async def test_an_ack_over_maxmemory_runs_as_by_evalsha(server: Redis) -> None:
    """An ack keeping no result record nor history writes deletions first: by EVALSHA it runs
    over maxmemory (noeviction) and frees memory; the FCALL refused (OOM) goes that way, and
    the pool stays on functions."""
    s = WorkerScripts(server, Keys("oom"))
    now, got = await _fetched(s, 4)
    used = int((await server.info("memory"))["used_memory"])
    await server.set("ballast", "x" * 3_000_000)
    await server.config_set("maxmemory-policy", "noeviction")
    await server.config_set("maxmemory", used + 1_000_000)
    with pytest.raises(ResponseError, match="maxmemory"):
        await server.set("more", "x")  # (over maxmemory indeed)
    done = [Acked(f.id, "a", b"1", now, 0, 1, f.token) for f in got]
    assert await s.ack("p1", done, False, now, False) is not None
    assert s.fallbacks == 1 and s.pinned["ack"].function == library("ack").name.encode()
    assert await server.hlen(s.keys.jobs) == 0  # (acknowledged: forgotten)
    await s.aclose()


async def test_a_load_refused_for_now_is_tried_again(server: Redis) -> None:
    """FUNCTION LOAD refused over maxmemory: EVALSHA meanwhile, the load tried again
    LOAD_RETRY_S later (not per call, not never)."""
    s = WorkerScripts(server, Keys("oomload"))
    clock = [1000.0]
    s.now = lambda: clock[0]
    await s.heartbeat("p1", b"{}", 600_000, mode="register")
    used = int((await server.info("memory"))["used_memory"])
    await server.set("ballast", "x" * 3_000_000)
    await server.config_set("maxmemory-policy", "noeviction")
    await server.config_set("maxmemory", used + 1_000_000)
    now = (await s.redis_time())[0] * 1000
    with pytest.raises(ResponseError, match="maxmemory"):
        await s.fetch("p1", now, 5, [("a", 0)])  # (by EVALSHA: refused at its first write)
    assert s.pinned["fetch"].function is None and "fetch" in s.to_load
    await server.config_set("maxmemory", 0)
    assert await s.fetch("p1", now, 5, [("a", 0)]) is not None  # (not tried again yet)
    assert s.pinned["fetch"].function is None and s.loads == 0
    clock[0] += LOAD_RETRY_S
    assert await s.fetch("p1", now, 5, [("a", 0)]) is not None
    assert s.pinned["fetch"].function == library("fetch").name.encode() and s.loads == 1
    await s.aclose()


async def test_calls_in_flight_that_find_the_library_gone_all_fall_back(server: Redis) -> None:
    """Three fetches sent together on the held connection after FUNCTION FLUSH: each is
    refused before it runs and each goes by EVALSHA; the library is loaded again once."""
    s = WorkerScripts(server, Keys("inflight"))
    now, _ = await _fetched(s, 2)
    await server.function_flush()
    got = await asyncio.gather(*(s.fetch("p1", now, 1, [("a", 0)]) for _ in range(3)))
    assert all(g is not None for g in got) and s.fallbacks == 3
    assert s.to_load == {"fetch"}
    assert await s.fetch("p1", now, 1, [("a", 0)]) is not None
    assert s.loads == 3 and s.fallbacks == 3  # (the two first loads, and this one)
    assert s.pinned["fetch"].function == library("fetch").name.encode()
    await s.aclose()
