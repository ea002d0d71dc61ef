"""The shared test server (REDIS_URL's when set) is guarded: the ``redis`` fixture's client
refuses the commands that change the server beyond a test's keys (tests/support/shared_server.py),
whichever way they are sent. The refusals are checked on a guarded client of a private server
(so that a broken guard flushes nothing of the shared one), and the fixture's client is checked
to be guarded with a command harmless if it went through."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from tests.support.shared_server import ServerWideCommand, guard

Call = Callable[[Redis], Awaitable[Any]]


async def _piped(r: Redis) -> Any:
    async with r.pipeline(transaction=True) as pipe:
        pipe.set("x", 1)
        pipe.flushdb()
        return await pipe.execute()


REFUSED: dict[str, Call] = {
    "flushdb": lambda r: r.flushdb(),
    "flushall": lambda r: r.flushall(asynchronous=True),
    "FLUSHDB sent raw": lambda r: r.execute_command("flushdb"),
    "FLUSHDB in a pipeline": _piped,
    "script_flush": lambda r: r.script_flush(),
    "SCRIPT FLUSH sent raw": lambda r: r.execute_command(b"SCRIPT", b"flush"),
    "function_flush": lambda r: r.function_flush(),
    "function_load replace": lambda r: r.function_load(
        "#!lua name=theirs\nredis.register_function('f', function() return 1 end)", replace=True
    ),
    "config_set": lambda r: r.config_set("maxmemory", 1),
    "CONFIG SET sent raw": lambda r: r.execute_command("CONFIG", "SET", "maxmemory", "1"),
    "config_resetstat": lambda r: r.config_resetstat(),
    "acl_setuser": lambda r: r.acl_setuser("someone", enabled=True),
    "replicaof": lambda r: r.replicaof("127.0.0.1", "1"),
    "shutdown": lambda r: r.shutdown(nosave=True),
    "DEBUG": lambda r: r.execute_command("DEBUG", "SLEEP", "0"),
    "client_kill_filter": lambda r: r.client_kill_filter(_type="pubsub"),
    "client_pause": lambda r: r.client_pause(1000),
    "CLIENT UNBLOCK": lambda r: r.execute_command("CLIENT", "UNBLOCK", "1"),
    "swapdb": lambda r: r.swapdb(0, 1),
}


@pytest.fixture
async def guarded(own_url: str) -> AsyncIterator[Redis]:
    client = guard(Redis.from_url(own_url))
    yield client
    await client.aclose()


@pytest.mark.parametrize("call", REFUSED.values(), ids=REFUSED.keys())
async def test_the_guard_refuses_server_wide_commands(
    guarded: Redis, own_redis: Redis, call: Call
) -> None:
    """Refused before it is sent: the server is as it was, and the client still works."""
    await own_redis.set("kept", "1")
    await own_redis.config_resetstat()
    with pytest.raises(ServerWideCommand, match="own_redis"):
        await call(guarded)
    assert await own_redis.get("kept") == b"1"
    assert await own_redis.get("x") is None  # (the pipeline sent nothing)
    assert (await own_redis.config_get("maxmemory"))["maxmemory"] == "0"
    assert await own_redis.acl_users() == ["default"]
    assert (await own_redis.info("replication"))["role"] == "master"
    assert "cmdstat_flushdb" not in await own_redis.info("commandstats")
    assert await guarded.ping()


async def test_the_guard_lets_the_rest_through(guarded: Redis, namespace: str) -> None:
    key = f"{namespace}:k"
    await guarded.set(key, "v")
    assert await guarded.get(key) == b"v"
    assert "maxmemory" in await guarded.config_get("maxmemory")
    sha = await guarded.script_load("return 1")
    assert await guarded.evalsha(sha, 0) == 1
    assert await guarded.client_list()
    async with guarded.pipeline() as pipe:
        assert await pipe.incr(key + ":n").incr(key + ":n").execute() == [1, 2]


async def test_the_shared_fixture_is_guarded(redis: Redis) -> None:
    """SCRIPT KILL: refused by the guard, and if it went through, only NOTBUSY."""
    try:
        await redis.script_kill()
    except ResponseError as exc:  # (the guard is off: the test fails, the server unchanged)
        pytest.fail(f"SCRIPT KILL reached the shared server: {exc}")
    except ServerWideCommand:
        return
    pytest.fail("SCRIPT KILL reached the shared server")
