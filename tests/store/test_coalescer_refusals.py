"""An enqueue call of several jobs that is refused is re-sent job by job (the refusal may be one
job's: a key of another type, tests/store/test_coalescer.py; or the call's size, over
maxmemory); a refusal for the server's state (over maxmemory: OOM; a replica: READONLY; ...) met
by a call of one job then fails the jobs not yet re-sent at once, each caller with its own copy
of the error: before, each made one more refused round trip. NOSCRIPT is not such a refusal: the
next call loads the script again."""

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


async def test_over_maxmemory_the_gathered_jobs_fail_after_one_re_send(
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
        # the first job's call, one for the N gathered, one for the first of them re-sent
        assert calls == 3  # (was 2 + N)
        assert enqueuer._coalescer.calls == 1 + 3
        assert await own_redis.hlen(Keys(namespace).jobs) == 1  # (the warm-up's)
        assert isinstance(await enqueuer.enqueue("a", {}), Job)  # fine again


async def test_on_a_replica_the_gathered_jobs_fail_after_one_re_send(
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
        # (which would find a new master): 2 for the first job, 2 for the N gathered, 2 for
        # the first of them re-sent (was 2 + 2 + 2N)
        assert calls == 6
        assert await own_redis.hlen(Keys(namespace).jobs) == 1


@pytest.mark.parametrize(
    "exc",
    [
        OutOfMemoryError("command not allowed when used memory > 'maxmemory'. script: x"),
        ReadOnlyError("You can't write against a read only replica."),
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
        # the script cache flushed again between redis-py's reload and its retry: the next
        # call loads it again
        NoScriptError("No matching script. Please use EVAL."),
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


async def test_a_script_cache_flushed_after_each_reload_does_not_fail_the_gathered_jobs(
    own_redis: Redis, namespace: str
) -> None:
    """SCRIPT FLUSH lands between redis-py's reload (SCRIPT LOAD) and its EVALSHA retry for the
    first three loads: the lone call's, the gathered batch's and its first job's re-send. Only
    the lone call and that job fail; the jobs after it, re-sent one by one, load the script
    again and are stored (NOSCRIPT is no server-state refusal)."""
    other = Redis.from_url(_url(own_redis))
    try:
        async with Enqueuer(own_redis, namespace=namespace, strict=None) as enqueuer:
            assert isinstance(await enqueuer.enqueue("warm", {}), Job)
            real, loads = own_redis.script_load, [0]

            async def load_then_flushed(script: str) -> Any:
                sha = await real(script)
                loads[0] += 1
                if loads[0] <= 3:
                    await other.script_flush()
                return sha

            own_redis.script_load = load_then_flushed  # type: ignore[method-assign]
            await other.script_flush()
            await other.function_flush()
            got = await asyncio.gather(
                *[enqueuer.enqueue("a", {"i": i}) for i in range(50)], return_exceptions=True
            )
            assert [type(g) for g in got].count(NoScriptError) == 2, got
            assert sum(isinstance(g, Job) for g in got) == 48
            assert await own_redis.hlen(Keys(namespace).jobs) == 1 + 48
    finally:
        await other.aclose()


def _url(redis: Redis) -> str:
    kw = redis.get_connection_kwargs()
    return f"redis://{kw['host']}:{kw['port']}"


async def test_a_batch_over_maxmemory_by_its_own_size_stores_the_jobs_that_fit_alone(
    own_redis: Redis, namespace: str
) -> None:
    """The gathered call's own arguments count towards used memory: refused as a batch, its jobs
    re-sent one by one are stored while each fits (before the server-state rule applies)."""
    async with Enqueuer(own_redis, namespace=namespace, strict=None) as enqueuer:
        assert isinstance(await enqueuer.enqueue("warm", {}), Job)
        used = int((await own_redis.info("memory"))["used_memory"])
        await own_redis.config_set("maxmemory-policy", "noeviction")
        await own_redis.config_set("maxmemory", str(used + 6_000_000))
        try:
            blob = "x" * 400_000
            first = asyncio.ensure_future(enqueuer.enqueue("a", {"i": -1}))
            await asyncio.sleep(0)  # in flight: the next ones are gathered into one call
            rest = [enqueuer.enqueue("a", {"i": i, "blob": blob}) for i in range(30)]
            got = await asyncio.gather(first, *rest, return_exceptions=True)
        finally:
            await own_redis.config_set("maxmemory", "0")
        stored = [g for g in got[1:] if isinstance(g, Job)]
        assert all(isinstance(g, (Job, OutOfMemoryError)) for g in got), got
        assert len(stored) >= 3, got  # (about 6 MB / 0.4 MB fit; the batch of 12 MB did not)
        assert [int(s.args["i"]) for s in stored] == list(range(len(stored)))
