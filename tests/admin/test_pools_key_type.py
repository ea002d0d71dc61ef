"""The pools' registry (``pools``) holding another type (a hand edit, a stray SET): the Client's
reads of it name the key and its repair (store/keyrepair.py) instead of Redis' own WRONGTYPE,
which names no key, and the answers that only look a pool up (``job()`` of a running job: its
pool; ``queues()``: which names are served) still come, without that part."""

from __future__ import annotations

import logging

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from errands import Client, Concurrency, Enqueuer, JobStatus
from errands.store.keys import Keys

REPAIR = "is a string; repair: DEL"


@pytest.mark.parametrize("method", ["worker_pools", "workers"])
async def test_the_pool_listings_name_the_key_and_its_repair(
    client: Client, redis: Redis, namespace: str, method: str
) -> None:
    keys = Keys(namespace)
    await redis.set(keys.pools, "hand edit")
    with pytest.raises(ResponseError) as raised:
        await getattr(client, method)()
    text = str(raised.value)
    assert text.startswith(f"WRONGTYPE {keys.pools} holds another type: "), text
    assert f"({keys.pools} {REPAIR} {keys.pools}" in text


async def test_a_running_job_and_the_queues_are_answered_without_their_pools(
    client: Client,
    enqueuer: Enqueuer,
    redis: Redis,
    namespace: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    keys = Keys(namespace)
    await enqueuer.enqueue("work", job_id="queued")
    await redis.hset(keys.jobs, "running", b'{"n": "work", "a": {}}')  # type: ignore[misc]
    await redis.set(keys.pools, "hand edit")
    caplog.set_level(logging.WARNING, logger="errands")
    info = await client.job("running")
    assert info is not None and info.status == JobStatus.IN_PROGRESS and info.pool_id is None
    (queue,) = await client.queues()
    assert (queue.name, queue.queued, queue.served) == ("work", 1, None)  # (None: not looked up)
    named = [r.getMessage() for r in caplog.records if f"{keys.pools} {REPAIR}" in r.getMessage()]
    assert len(named) == 2, caplog.text


@pytest.mark.parametrize("method", ["quiet_pool", "resume_pool"])
@pytest.mark.parametrize("which", ["pools", "quiet_requests"])
async def test_a_quiet_request_names_the_key_and_its_repair(
    client: Client, redis: Redis, namespace: str, which: str, method: str
) -> None:
    """quiet_request.lua refuses by name; the Client adds the key's type and repair."""
    key = getattr(Keys(namespace), which)
    await redis.set(key, "hand edit")
    with pytest.raises(ResponseError) as raised:
        await getattr(client, method)("p1")
    text = str(raised.value)
    assert text.startswith(f"WRONGTYPE {key} holds another type: "), text
    assert f"({key} {REPAIR} {key}" in text


async def test_set_limits_stores_with_a_warning_naming_the_repair(
    client: Client, redis: Redis, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The served names' lookup only feeds a warning (``strict=False``): the limits are stored,
    and the warning names the key and its repair (it was Redis' bare WRONGTYPE, storing
    nothing)."""
    keys = Keys(namespace)
    await redis.set(keys.pools, "hand edit")
    with caplog.at_level(logging.WARNING, logger="errands.admin"):
        await client.set_limits("work", [Concurrency(2)])
    assert await redis.hexists(keys.runtime_limits, "work")  # type: ignore[misc]
    assert f"({keys.pools} {REPAIR} {keys.pools}" in caplog.text, caplog.text


async def test_strict_set_limits_raises_naming_the_repair(
    client: Client, redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    await redis.set(keys.pools, "hand edit")
    with pytest.raises(ResponseError) as raised:
        await client.set_limits("work", [Concurrency(2)], strict=True)
    assert f"({keys.pools} {REPAIR} {keys.pools}" in str(raised.value), str(raised.value)
    assert not await redis.hexists(keys.runtime_limits, "work")  # type: ignore[misc]
