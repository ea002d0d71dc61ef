"""``Client.partitions()`` counts a partition's backlog as the jobs of it waiting on the queue:
not the index entries an older errands left behind, on a cancel, delete or priority change,
until a fetch reached them (admin/limitsinfo.py ``_backlogs``; the scripts now take a job's
entry out with it: tests/admin/test_destroy_races.py). Such entries are put back here by hand,
as that version left them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from errands import Client, Enqueuer
from errands.admin import limitsinfo
from errands.store.devserver import RedisServer
from errands.store.keys import Keys


@pytest.fixture
async def client(redis_url: str, namespace: str) -> AsyncIterator[Client]:
    async with Client.from_url(redis_url, namespace=namespace) as c:
        yield c


async def _backlog(client: Client) -> dict[str, int]:
    return {p.name: p.queued for p in (await client.partitions("x")).items}


async def _left_behind(redis: Redis, namespace: str, entries: list[bytes]) -> None:
    """The index entries read before the actions, back as an older errands left them."""
    await redis.zadd(Keys(namespace).partition_queue("x"), dict.fromkeys(entries, 0))


async def _entries(redis: Redis, namespace: str) -> list[bytes]:
    return list(await redis.zrange(Keys(namespace).partition_queue("x"), 0, -1))


async def test_left_entries_are_not_counted(
    redis: Redis, redis_url: str, namespace: str, client: Client
) -> None:
    async with Enqueuer.from_url(redis_url, namespace=namespace) as enq:
        for i in range(4):
            await enq.enqueue("x", {}, job_id=f"a{i}", partition="cust:1")
        await enq.enqueue("x", {}, job_id="b0", partition="客户:ü")
    assert await _backlog(client) == {"cust:1": 4, "客户:ü": 1}
    before = await _entries(redis, namespace)
    assert await client.cancel("a0") == "cancelled"
    assert await client.delete_queued_job("a1")
    await client.update_job("a2", priority=5)  # (indexed anew, at its new score)
    pq = Keys(namespace).partition_queue("x")
    assert await redis.zlexcount(pq, "[cust:1\0", "(cust:1\1") == 2
    await _left_behind(redis, namespace, before)  # (a2's at the old score too)
    assert await redis.zlexcount(pq, "[cust:1\0", "(cust:1\1") == 5  # what was counted before
    assert await _backlog(client) == {"cust:1": 2, "客户:ü": 1}


async def test_entries_past_the_checked_ones_count_as_they_are(
    redis: Redis,
    redis_url: str,
    namespace: str,
    client: Client,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(limitsinfo, "CHECKED", 2)
    async with Enqueuer.from_url(redis_url, namespace=namespace) as enq:
        for i in range(4):
            await enq.enqueue("x", {}, job_id=f"a{i}", partition="p")
    before = await _entries(redis, namespace)
    assert await client.cancel("a0") == "cancelled"  # (checked: not counted)
    assert await client.cancel("a3") == "cancelled"  # (past the checked two: counted)
    await _left_behind(redis, namespace, before)
    assert await _backlog(client) == {"p": 3}


async def test_a_server_refusing_zmscore_gets_the_entries_counted(
    own_redis: Redis, own_url: str, namespace: str
) -> None:
    """An ACL rule without ``+zmscore`` (docs/deployment.md: an upgrade adds it) or Redis < 6.2:
    the backlog counts the index entries as they are, as before they were checked; not an
    error (the dashboard's queue page calls it). (A server of its own: it adds an ACL user.)"""
    client = Client(own_redis, namespace=namespace)
    async with Enqueuer.from_url(own_url, namespace=namespace) as enq:
        for i in range(3):
            await enq.enqueue("x", {}, job_id=f"a{i}", partition="p")
    before = await _entries(own_redis, namespace)
    assert await client.cancel("a0") == "cancelled"
    await _left_behind(own_redis, namespace, before)
    user = f"nozmscore-{namespace}"
    await own_redis.execute_command(
        "ACL", "SETUSER", user, "on", ">pw", "~*", "&*", "+@all", "-zmscore"
    )
    try:
        url = own_url.replace("redis://", f"redis://{user}:pw@", 1)
        async with Client.from_url(url, namespace=namespace) as confined:
            assert await _backlog(confined) == {"p": 3}  # (the cancelled job's entry too)
        assert await _backlog(client) == {"p": 2}
    finally:
        await own_redis.execute_command("ACL", "DELUSER", user)


async def test_a_queue_key_of_another_type_is_an_error(
    redis: Redis, redis_url: str, namespace: str, client: Client
) -> None:
    """Not a ZMSCORE refused: the backlog is not given unchecked, the error names the key (as
    the scripts report a key of another type)."""
    async with Enqueuer.from_url(redis_url, namespace=namespace) as enq:
        await enq.enqueue("x", {}, job_id="a0", partition="p")
    queue = Keys(namespace).queue("x")
    await redis.delete(queue)
    await redis.set(queue, "not a queue")
    with pytest.raises(ResponseError, match=rf"^WRONGTYPE {queue} holds another type"):
        await client.partitions("x")


async def test_a_server_without_zmscore_gets_the_entries_counted(
    namespace: str, tmp_path: Path
) -> None:
    """Redis < 6.2 (no ZMSCORE) answers "unknown command", as a server with the command renamed
    away does: the backlog counts the index entries as they are."""
    conf = tmp_path / "no-zmscore.conf"
    conf.write_text('rename-command zmscore ""\n')
    with RedisServer(include=str(conf)) as server:
        async with Client.from_url(server.url, namespace=namespace) as client:
            async with Enqueuer.from_url(server.url, namespace=namespace) as enq:
                for i in range(3):
                    await enq.enqueue("x", {}, job_id=f"a{i}", partition="p")
            before = await _entries(client.redis, namespace)
            assert await client.cancel("a0") == "cancelled"
            await _left_behind(client.redis, namespace, before)
            assert await _backlog(client) == {"p": 3}  # (the cancelled job's entry too)
