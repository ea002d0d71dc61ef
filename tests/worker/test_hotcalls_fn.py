"""A pool's fetch and ack calls as FCALL of their libraries (store/fnlib.py, store/hotcalls.py):
loaded once, called on the held connections; a library flushed from the server is loaded again
(that call goes the general way); a server or user that refuses them leaves the pool on EVALSHA
(the jobs run all the same)."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from errands import Enqueuer, Job, WorkerPool
from errands.store.devserver import RedisServer
from errands.store.fnlib import function_library, library, script_parts
from errands.store.hotcalls import HOT, WorkerScripts
from errands.store.keys import Keys
from errands.store.pinned import PinnedScript
from errands.store.scripts import lua_source
from tests.support.commandstats import command_calls
from tests.worker.test_hotcalls import GeneralCalls, hot_pool, run_jobs


async def test_fetch_and_ack_are_calls_of_functions(redis: Redis, namespace: str) -> None:
    async with hot_pool(redis, namespace) as (pool, scripts, enq, done):
        await run_jobs(pool, enq, done, 5)
        assert scripts.loads == 2 and not scripts.to_load
        for name in HOT:
            assert scripts.pinned[name].function == library(name).name.encode()
        general = GeneralCalls(scripts)
        before = await command_calls(redis)
        await run_jobs(pool, enq, done, 50)
        after = await command_calls(redis)
        assert general.counts == {"fetch": 0, "ack": 0} and scripts.fallbacks == 0
        assert after.get("fcall", 0) - before.get("fcall", 0) >= 2  # (a fetch, an ack at least)
        assert await redis.hget(pool.keys.stats, "processed") == b"55"


async def test_a_flushed_library_is_loaded_again(own_redis: Redis, namespace: str) -> None:
    """FUNCTION FLUSH (or a restart without persistence) mid-run: the call that finds its
    function missing goes the general way (EVALSHA); the library is loaded before the next."""
    async with hot_pool(own_redis, namespace) as (pool, scripts, enq, done):
        await run_jobs(pool, enq, done, 10)
        assert scripts.loads == 2
        general = GeneralCalls(scripts)
        await own_redis.function_flush()
        await run_jobs(pool, enq, done, 20)
        assert scripts.fallbacks >= 1 and general.counts["ack"] >= 1
        await run_jobs(pool, enq, done, 20)  # (the fetch's reload may wait for its next call)
        assert scripts.loads == 4
        assert all(scripts.pinned[name].function for name in HOT)
        assert await own_redis.hget(pool.keys.stats, "processed") == b"50"


async def _as_user(redis: Redis, redis_url: str, rule: str) -> tuple[str, Redis]:
    user, password = "fn-" + uuid.uuid4().hex[:8], uuid.uuid4().hex
    await redis.execute_command(
        "ACL", "SETUSER", user, "on", f">{password}", "~*", "&*", *rule.split()
    )
    host = redis_url.split("://", 1)[1]
    return user, Redis.from_url(f"redis://{user}:{password}@{host}")


@pytest.mark.parametrize("denied", ["-function", "-fcall"])
async def test_a_user_without_functions_stays_on_evalsha(
    own_redis: Redis, own_url: str, namespace: str, denied: str, caplog: pytest.LogCaptureFixture
) -> None:
    """FUNCTION LOAD refused (the load, said once at debug level), or FCALL refused (that call
    goes the general way): EVALSHA from then on, on the held connections."""
    user, client = await _as_user(own_redis, own_url, f"+@all {denied}")
    caplog.set_level(logging.DEBUG, logger="errands.pool")
    try:
        async with hot_pool(client, namespace) as (pool, scripts, enq, done):
            await run_jobs(pool, enq, done, 10)
            general = GeneralCalls(scripts)
            await run_jobs(pool, enq, done, 30)
            assert general.counts == {"fetch": 0, "ack": 0}
            assert not scripts.to_load
            assert all(scripts.pinned[name].function is None for name in HOT)
            assert scripts.loads == (0 if denied == "-function" else 2)
            assert await own_redis.hget(pool.keys.stats, "processed") == b"40"
        said = [r.getMessage() for r in caplog.records if "stays on EVALSHA" in r.getMessage()]
        assert len(said) == 2 and all(r.levelno == logging.DEBUG for r in caplog.records
                                      if "stays on EVALSHA" in r.getMessage())  # fmt: skip
    finally:
        await client.aclose()
        await own_redis.execute_command("ACL", "DELUSER", user)


async def test_a_server_without_functions_stays_on_evalsha(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis < 7 answers FUNCTION with an unknown command: EVALSHA, no error. (The scripts
    loaded first, as another pool would have: a first call's NOSCRIPT is not what is counted.
    The test counted on earlier tests of the file having loaded them on the shared server.)"""
    for name in HOT:
        await redis.script_load(lua_source(name))
    send = PinnedScript.send

    async def unknown(self: PinnedScript, packed: bytes) -> Any:
        if packed.startswith(b"*3\r\n$8\r\nFUNCTION\r\n$4\r\nLOAD\r\n"):  # (sent held)
            raise ResponseError("unknown command 'FUNCTION', with args beginning with: 'LOAD'")
        return await send(self, packed)

    monkeypatch.setattr(PinnedScript, "send", unknown)
    async with hot_pool(redis, namespace) as (pool, scripts, enq, done):
        await run_jobs(pool, enq, done, 20)
        assert scripts.loads == 0 and not scripts.to_load and scripts.fallbacks == 0
        assert all(scripts.pinned[name].function is None for name in HOT)
        assert await redis.hget(pool.keys.stats, "processed") == b"20"


async def test_functions_off(redis: Redis, namespace: str) -> None:
    scripts = WorkerScripts(redis, Keys(namespace), functions=False)
    assert not scripts.to_load
    await scripts.heartbeat("p", b"{}", 60_000, mode="register")
    assert await scripts.fetch("p", 1, 5, [("work", 0)]) is not None
    assert scripts.pinned["fetch"].function is None and scripts.loads == 0
    await scripts.aclose()


async def _libraries(redis: Redis) -> set[str]:
    return {
        (lib[1] if isinstance(lib, list) else lib["library_name"]).decode()
        for lib in await redis.function_list()
    }


async def _load_older(redis: Redis, name: str) -> str:
    """A library of ``name`` as another version of errands would name and load it."""
    libs, body = script_parts(name)
    older = function_library(name, libs, body + "-- another version\n")
    await redis.function_load(older.text, replace=True)
    return older.name


async def test_the_first_load_deletes_other_versions_libraries(
    own_redis: Redis, namespace: str
) -> None:
    """An upgrade's libraries do not pile up on the server: a pool's first load of each
    deletes those another version of errands loaded, and nothing else."""
    older = {await _load_older(own_redis, name) for name in HOT}
    await own_redis.function_load(
        "#!lua name=someone_elses\nredis.register_function('theirs', function() return 1 end)",
        replace=True,
    )
    async with hot_pool(own_redis, namespace) as (pool, _, enq, done):
        await run_jobs(pool, enq, done, 10)
        held = await _libraries(own_redis)
        assert not older & held
        assert {library(name).name for name in HOT} | {"someone_elses"} <= held
    await own_redis.function_delete("someone_elses")


async def test_a_reload_deletes_nothing(own_redis: Redis, namespace: str) -> None:
    """A pool of the old version in a rolling deploy, whose library a new pool deleted, loads
    its own again without deleting the new one's: one reload, no back and forth."""
    async with hot_pool(own_redis, namespace) as (pool, scripts, enq, done):
        await run_jobs(pool, enq, done, 10)
        assert scripts.loads == 2
        newer = await _load_older(own_redis, "fetch")  # (to this pool, another version's)
        await own_redis.function_delete(library("fetch").name)
        await run_jobs(pool, enq, done, 20)
        await run_jobs(pool, enq, done, 20)  # (the fetch's reload may wait for its next call)
        assert scripts.loads == 3
        assert {newer, library("fetch").name} <= await _libraries(own_redis)
    await own_redis.function_delete(newer)


@pytest.mark.parametrize("functions", [True, False])
async def test_the_pool_option_turns_functions_off(namespace: str, functions: bool) -> None:
    """``WorkerPool(redis_functions=False)`` (a user whose ACL does not grant FUNCTION LOAD):
    the pool never sends FUNCTION LOAD or FCALL, counted by the server (a private one: no other
    test's calls), and runs its jobs by EVALSHA. On (the default) the same count sees them."""
    with RedisServer() as server:
        pool, done = work_pool_from_url(server.url, namespace, redis_functions=functions)
        async with Redis.from_url(server.url) as redis:
            async with Enqueuer(redis, namespace=namespace) as enq, pool:
                await run_jobs(pool, enq, done, 30)
            calls = await command_calls(redis)
            assert await redis.hget(pool.keys.stats, "processed") == b"30"
    sent = calls.get("function|load", 0), calls.get("fcall", 0)
    assert (sent[0] >= 2 and sent[1] >= 2) if functions else sent == (0, 0), sent
    assert calls.get("evalsha", 0) >= (0 if functions else 4)


def work_pool_from_url(url: str, namespace: str, **options: Any) -> tuple[WorkerPool, list[str]]:
    done: list[str] = []
    pool = WorkerPool.from_url(url, namespace=namespace, concurrency=8, **options)

    @pool.job("work")
    async def work(job: Job) -> None:
        done.append(job.id)

    return pool, done
