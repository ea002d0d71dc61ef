"""Typos must not be silent (issue 16): pools publish the job names they serve; an enqueue of a
name no running pool serves warns once per name (``strict=True`` raises, with a "did you
mean"); ``inspect queues`` marks such queues. Plus the payload limits of an enqueue: a maximum
size (1 MiB by default) and no NaN or Infinity (JSON has none; orjson wrote them as null)."""

from __future__ import annotations

import logging
import math

import pytest
from redis.asyncio import Redis

from errands import (
    Client,
    Concurrency,
    Enqueuer,
    Job,
    PayloadTooLargeError,
    SerializationError,
    UnknownJobError,
    WorkerPool,
)
from errands.store.keys import Keys
from errands.store.served import served_names


def make_pool(redis_url: str, namespace: str) -> WorkerPool:
    pool = WorkerPool.from_url(redis_url, namespace=namespace, dead_timeout=12.0)

    @pool.job("send_email")
    async def send_email(job: Job) -> None: ...

    @pool.job("resize")
    def resize(job: Job) -> None: ...

    return pool


async def test_pools_publish_the_names_they_serve_with_a_ttl(
    redis_url: str, namespace: str, redis: Redis
) -> None:
    keys = Keys(namespace)
    pool = make_pool(redis_url, namespace)
    async with pool:
        assert await served_names(redis, keys) == {"send_email", "resize"}
        ttl = await redis.pttl(keys.serves(pool.id))
        assert 30_000 < ttl <= 36_000  # 3 x dead_timeout: gone on its own if the pool dies
    assert await redis.exists(keys.serves(pool.id)) == 0  # withdrawn at stop
    assert await served_names(redis, keys) == set()


async def test_unserved_names_warn_once_and_strict_raises(
    redis_url: str, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "errands.enqueuer")
    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        await enqueuer.enqueue("send_email")  # no pool running yet
        await enqueuer.enqueue("send_email")
        assert [r.getMessage() for r in caplog.records] == [
            f"no running pool serves job name 'send_email' in namespace {namespace!r} "
            "(no pool is running); Enqueuer(strict=True) raises instead"
        ]
        caplog.clear()
        async with make_pool(redis_url, namespace):
            await enqueuer.enqueue("resize")  # served: no warning
            await enqueuer.enqueue_many([("send_emial", {}), ("resize", {})])
            assert [r.getMessage() for r in caplog.records] == [
                f"no running pool serves job name 'send_emial' in namespace {namespace!r} "
                "(did you mean 'send_email'?); Enqueuer(strict=True) raises instead"
            ]
            async with Enqueuer.from_url(redis_url, namespace=namespace, strict=True) as strict:
                assert await strict.enqueue("send_email") is not None
                with pytest.raises(UnknownJobError, match="did you mean 'send_email'"):
                    await strict.enqueue("send_emial")
                with pytest.raises(UnknownJobError, match=r"'nope'.*served: resize, send_email"):
                    await strict.enqueue_unique("nope", {})
                with pytest.raises(UnknownJobError):
                    await strict.enqueue_many([("resize", {}), ("nope", {})])
    async with Client.from_url(redis_url, namespace=namespace) as client:
        # nothing of the refused calls was stored ("nope" never, the batch not at all)
        queues = {q.name: q for q in await client.queues()}
        assert sorted(queues) == ["resize", "send_email", "send_emial"]
        assert queues["send_emial"].queued == 1 and queues["resize"].queued == 0
        assert [q.served for q in queues.values()] == [False] * 3  # the pool has stopped


async def test_set_limits_of_unserved_names_warns_and_strict_raises(
    redis_url: str, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """As an enqueue: limits of a name no running pool serves are stored (pools may start
    later) with a warning naming it; ``strict=True`` raises and stores nothing."""
    caplog.set_level(logging.WARNING, "errands.admin")
    one = [Concurrency(1)]
    async with Client.from_url(redis_url, namespace=namespace) as client:
        await client.set_limits("send_email", one)  # no pool running yet
        assert [r.getMessage() for r in caplog.records] == [
            f"no running pool serves job name 'send_email' in namespace {namespace!r} "
            "(no pool is running); its limits apply once a pool serves it; "
            "set_limits(strict=True) raises instead"
        ]
        caplog.clear()
        async with make_pool(redis_url, namespace):
            await client.set_limits("resize", one)  # served: no warning
            await client.set_limits("send_emial", one)
            await client.set_limits("send_emial", None)  # (a clear: no look)
            await client.set_limits("other", one, strict=None)  # (no look)
            assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
                (
                    "errands.admin",
                    logging.WARNING,
                    f"no running pool serves job name 'send_emial' in namespace {namespace!r} "
                    "(did you mean 'send_email'?); its limits apply once a pool serves it; "
                    "set_limits(strict=True) raises instead",
                )
            ]
            await client.set_limits("send_email", one, strict=True)
            with pytest.raises(UnknownJobError, match="did you mean 'send_email'"):
                await client.set_limits("send_emial", one, strict=True)
        stored = {name: view.runtime for name, view in (await client.limits()).items()}
        assert stored == dict.fromkeys(["other", "resize", "send_email"], tuple(one))


async def test_strict_none_skips_the_check(redis_url: str, namespace: str, redis: Redis) -> None:
    async with Enqueuer.from_url(redis_url, namespace=namespace, strict=None) as enqueuer:
        before = (await redis.info("commandstats")).get("cmdstat_zrange", {}).get("calls", 0)
        await enqueuer.enqueue("anything")
        after = (await redis.info("commandstats")).get("cmdstat_zrange", {}).get("calls", 0)
        assert after == before  # not even looked up


async def test_queue_info_marks_the_queues_no_pool_serves(redis_url: str, namespace: str) -> None:
    async with Enqueuer.from_url(redis_url, namespace=namespace, strict=None) as enqueuer:
        await enqueuer.enqueue("send_email")
        await enqueuer.enqueue("send_emial")
    pool = make_pool(redis_url, namespace)
    await pool.start()
    try:
        async with Client.from_url(redis_url, namespace=namespace) as client:
            served = {q.name: q.served for q in await client.queues()}
    finally:
        await pool.stop()
    assert served == {"send_email": True, "send_emial": False}


async def test_payload_over_the_limit_is_refused_at_enqueue(
    redis_url: str, namespace: str, redis: Redis
) -> None:
    big = {"blob": "x" * (1 << 20)}
    async with Enqueuer.from_url(redis_url, namespace=namespace, strict=None) as enqueuer:
        assert enqueuer.max_payload == 1 << 20  # 1 MiB by default (docs/enqueueing.md)
        with pytest.raises(PayloadTooLargeError, match=r"job 'upload' is 1\.0 MiB encoded, over"):
            await enqueuer.enqueue("upload", big)
        with pytest.raises(PayloadTooLargeError):
            await enqueuer.enqueue_many([("small", {}), ("upload", big)])
        with pytest.raises(PayloadTooLargeError):
            await enqueuer.enqueue_unique("upload", big)
        assert await redis.hlen(Keys(namespace).jobs) == 0  # nothing of it stored
        assert await enqueuer.enqueue("upload", {"blob": "x" * 1000}) is not None
    async with Enqueuer.from_url(
        redis_url, namespace=namespace, strict=None, max_payload=None
    ) as unlimited:
        assert await unlimited.enqueue("upload", big) is not None
    async with Enqueuer.from_url(
        redis_url, namespace=namespace, strict=None, max_payload=100
    ) as tight:
        with pytest.raises(PayloadTooLargeError, match=r"over the limit of 0\.1 KiB"):
            await tight.enqueue("upload", {"blob": "x" * 100})
    with pytest.raises(ValueError, match="max_payload"):
        Enqueuer.from_url(redis_url, max_payload=0)


@pytest.mark.parametrize(
    ("args", "where"),
    [
        ({"x": math.nan}, "x is not a finite number"),
        ({"a": [1, {"b": math.inf}]}, "a[1]['b'] is not a finite number"),
        ({"c": -math.inf}, "c is not a finite number"),
    ],
)
async def test_nan_and_infinity_are_refused_not_stored_as_null(
    redis_url: str, namespace: str, redis: Redis, args: dict[str, object], where: str
) -> None:
    async with Enqueuer.from_url(redis_url, namespace=namespace, strict=None) as enqueuer:
        with pytest.raises(SerializationError) as caught:
            await enqueuer.enqueue("measure", args)
        assert str(caught.value) == (
            f"the args of job 'measure' is not JSON-serializable: {where} "
            "(JSON has no NaN or Infinity)"
        )
        assert await enqueuer.enqueue("measure", {"x": None, "s": "null", "f": 1.5})
    assert await redis.hlen(Keys(namespace).jobs) == 1
