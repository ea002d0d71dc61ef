"""An enqueue call of several jobs refused for the server's state (over maxmemory: OOM; a
replica: READONLY; ...) fails every caller of the call at once, with the error each would get
alone, and is not re-sent job by job: that made one more refused round trip per job. The script's
own refusal of one job (a key of another type) still re-sends them one by one
(tests/store/test_coalescer.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import (
    NoPermissionError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)

from errands import Enqueuer, Job
from errands.store.coalescer import server_refusal
from errands.store.devserver import RedisServer
from errands.store.keys import Keys
from tests.support.commandstats import command_calls
from tests.support.infra.nodes import free_port

N = 20  # jobs gathered behind the call in flight


@pytest.fixture
async def own_redis() -> AsyncIterator[Redis]:
    """A server of this test's own: it is put over maxmemory, or made a replica."""
    with RedisServer() as server:
        client = Redis.from_url(server.url)
        yield client
        await client.aclose()


async def _gathered(enqueuer: Enqueuer) -> list[Any]:
    """The outcomes of a first enqueue and of ``N`` enqueues submitted while it is in flight
    (gathered into the next call)."""
    first = asyncio.ensure_future(enqueuer.enqueue("warm", {}))
    await asyncio.sleep(0)  # the first call is in flight: the next ones are gathered
    rest = [asyncio.ensure_future(enqueuer.enqueue("a", {"i": i})) for i in range(N)]
    return await asyncio.gather(first, *rest, return_exceptions=True)


async def _refused_calls(redis: Redis, enqueuer: Enqueuer, error: type[Exception]) -> int:
    """Script calls the server ran for a first enqueue and ``N`` gathered behind it, all refused
    with ``error`` (each caller its own exception object)."""
    await redis.config_resetstat()
    outcomes = await _gathered(enqueuer)
    assert all(type(o) is error for o in outcomes), outcomes
    assert len({id(o) for o in outcomes}) == N + 1
    coalescer = enqueuer._coalescer
    assert not coalescer._busy and not coalescer._pending
    calls = await command_calls(redis)
    return calls.get("evalsha", 0) + calls.get("eval", 0) + calls.get("fcall", 0)


async def test_over_maxmemory_the_gathered_call_is_refused_once(
    own_redis: Redis, namespace: str
) -> None:
    async with Enqueuer(own_redis, namespace=namespace, strict=None) as enqueuer:
        assert isinstance(await enqueuer.enqueue("warm", {}), Job)  # (the script loaded)
        await own_redis.config_set("maxmemory-policy", "noeviction")
        await own_redis.config_set("maxmemory", "1")
        try:
            calls = await _refused_calls(own_redis, enqueuer, OutOfMemoryError)
        finally:
            await own_redis.config_set("maxmemory", "0")
        assert calls == 2  # the first job's call, and one for the N gathered (was 2 + N)
        assert enqueuer._coalescer.calls == 1 + 2
        assert await own_redis.hlen(Keys(namespace).jobs) == 1  # (the warm-up's)
        assert isinstance(await enqueuer.enqueue("a", {}), Job)  # fine again


async def test_on_a_replica_the_gathered_call_is_refused_once(
    own_redis: Redis, namespace: str
) -> None:
    async with Enqueuer(own_redis, namespace=namespace, strict=None) as enqueuer:
        assert isinstance(await enqueuer.enqueue("warm", {}), Job)
        await own_redis.replicaof("127.0.0.1", str(free_port()))  # (nobody there)
        try:
            calls = await _refused_calls(own_redis, enqueuer, ReadOnlyError)
        finally:
            await own_redis.replicaof("NO", "ONE")
        # each call is sent on the pinned connection, then, READONLY there, the general way
        # (which would find a new master): 2 for the first job, 2 for the N gathered
        assert calls == 4
        assert await own_redis.hlen(Keys(namespace).jobs) == 1


@pytest.mark.parametrize(
    "exc",
    [
        OutOfMemoryError("command not allowed when used memory > 'maxmemory'. script: x"),
        ReadOnlyError("You can't write against a read only replica."),
        NoScriptError("No matching script. Please use EVAL."),
        NoPermissionError("this user has no permissions to run the 'evalsha' command"),
        TryAgainError("Multiple keys request during rehashing of slot"),
        ResponseError("MISCONF Redis is configured to save RDB snapshots, but it's currently"),
        ResponseError("NOREPLICAS Not enough good replicas to write."),
        ResponseError("BUSY Redis is busy running a script. You can only call SCRIPT KILL"),
        ResponseError(  # Redis < 7 quotes what the script's command met
            "Error running script (call to f_0123): @user_script:9: @user_script: 9: -OOM "
            "command not allowed when used memory > 'maxmemory'."
        ),
        ResponseError("Error running script (call to f_0123): @user_script:9: -MISCONF x y"),
    ],
)
def test_refusals_for_the_servers_state(exc: Exception) -> None:
    assert server_refusal(exc)


@pytest.mark.parametrize(
    "exc",
    [
        ResponseError("WRONGTYPE t1:queue:broken holds another type: nothing of this call..."),
        ResponseError("errands: enqueue: bad job spec x: no job of this call was stored"),
        ResponseError("errands: t1:seq holds abc, not a counter: nothing of this call..."),
        # a key the ACL's patterns refuse may be one job name's: the others go one by one
        NoPermissionError("this user has no permissions to access one of the keys used"),
        ResponseError(
            "Error running script (call to f_0123): @user_script:9: -NOPERM this user has no "
            "permissions to access one of the keys used as arguments"
        ),
        ResponseError("Error running script (call to f_0123): @user_script:9: attempt to x"),
        ValueError("not a reply"),
    ],
)
def test_refusals_of_a_job(exc: Exception) -> None:
    assert not server_refusal(exc)


async def test_a_server_refusal_during_the_one_by_one_re_send_fails_the_rest_unsent(
    redis: Redis, namespace: str
) -> None:
    """The batch fails by a script error of one job and is re-sent job by job; the server goes
    over maxmemory for the third job's call (a fault): that job and the ones after it fail with
    that error, the fourth unsent, as when Redis is lost then."""
    keys = Keys(namespace)
    await redis.set(keys.queue("broken"), "not a sorted set")
    async with Enqueuer(redis, namespace=namespace, strict=None) as enqueuer:
        coalescer, sent = enqueuer._coalescer, list[str]()

        def oom_for_b(real: Any) -> Any:
            async def send(names: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[int]:
                sent.extend(str(row[2]) for row in rows if len(rows) == 1)
                if len(rows) == 1 and rows[0][2] == "B":
                    raise OutOfMemoryError("command not allowed when used memory > 'maxmemory'")
                return await real(names, rows)  # type: ignore[no-any-return]

            return send

        coalescer._fast = oom_for_b(coalescer._fast)
        first = asyncio.ensure_future(enqueuer.enqueue("warm", {}, job_id="W"))
        await asyncio.sleep(0)
        jobs = [("good", "X"), ("broken", "A"), ("good", "B"), ("good", "C")]
        tasks = [asyncio.ensure_future(enqueuer.enqueue(n, {}, job_id=i)) for n, i in jobs]
        await first
        x, a, b, c = await asyncio.gather(*tasks, return_exceptions=True)
        assert isinstance(x, Job) and type(a) is ResponseError
        assert isinstance(b, OutOfMemoryError) and isinstance(c, OutOfMemoryError)
        assert sent == ["W", "X", "A", "B"]  # (C never re-sent)
        assert {m.decode() for m in await redis.zrange(keys.queue("good"), 0, -1)} == {"X"}
        assert not coalescer._busy and not coalescer._pending
