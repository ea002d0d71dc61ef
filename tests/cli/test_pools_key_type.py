"""The CLI while the pools' registry (``pools``) holds another type (a hand edit).
``Client.queues()`` answers ``served`` None (not looked up, b22cff6); ``errands enqueue`` reads
the served names after storing its job; ``errands limits set`` looks them up for a warning."""

from __future__ import annotations

from redis.asyncio import Redis

from errands import Enqueuer
from errands.store.keys import Keys
from tests.cli.test_admin import Cli, cli  # noqa: F401  (the fixture)


async def test_inspect_queues_does_not_say_unserved_when_it_could_not_tell(
    cli: Cli,  # noqa: F811
    redis: Redis,
    namespace: str,
) -> None:
    """The table's SERVED column says "?" (unknown), as ``--json`` says null and the dashboard
    '?', not "NO" (no running pool serves the name)."""
    async with Enqueuer(redis, namespace=namespace, strict=None) as enqueuer:
        await enqueuer.enqueue("work")
    await redis.set(Keys(namespace).pools, "hand edit")
    assert (await cli("inspect", "queues", "--json")).json()[0]["served"] is None
    table = await cli("inspect", "queues")
    assert table.code == 0, table
    row = table.out.splitlines()[2]
    assert row.split()[0] == "work"
    assert row.split()[-1] == "?", table.out


async def test_enqueue_that_stored_its_job_does_not_fail(
    cli: Cli,  # noqa: F811
    redis: Redis,
    namespace: str,
) -> None:
    """The job is stored and its id printed; the served names' read (for a warning) then
    failing only warns, naming the key and its repair, and the command exits 0 (exit 1 told a
    script the enqueue failed: it enqueued again, and the job was stored twice)."""
    keys = Keys(namespace)
    await redis.set(keys.pools, "hand edit")
    r = await cli("enqueue", "work")
    assert await redis.hlen(keys.jobs) == 1
    assert r.code == 0, r
    assert r.out.strip() in {k.decode() for k in await redis.hkeys(keys.jobs)}, r
    assert f"({keys.pools} is a string; repair: DEL {keys.pools}" in r.err, r


async def test_limits_set_stores_and_warns_naming_the_repair(
    cli: Cli,  # noqa: F811
    redis: Redis,
    namespace: str,
) -> None:
    """``limits set`` of a name enqueued before (a known job type) stores the limits, warning
    with the key and its repair that it could not look the served names up."""
    keys = Keys(namespace)
    async with Enqueuer(redis, namespace=namespace, strict=None) as enqueuer:
        await enqueuer.enqueue("work")
    await redis.set(keys.pools, "hand edit")
    r = await cli("limits", "set", "work", "concurrency=2")
    assert r.code == 0, r
    assert await redis.hexists(keys.runtime_limits, "work")  # type: ignore[misc]
    assert f"({keys.pools} is a string; repair: DEL {keys.pools}" in r.err, r
