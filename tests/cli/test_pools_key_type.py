"""Review probes of b22cff6: the CLI while the pools' registry (``pools``) holds another type
(a hand edit). ``Client.queues()`` now answers ``served`` None (not looked up); ``errands
enqueue`` reads the served names after storing its job."""

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
    """Fails on main: the table's SERVED column says "NO" (no pool serves the name), as for a
    name no running pool serves, while ``--json`` says null (unknown) and the dashboard '?'."""
    async with Enqueuer(redis, namespace=namespace, strict=None) as enqueuer:
        await enqueuer.enqueue("work")
    await redis.set(Keys(namespace).pools, "hand edit")
    assert (await cli("inspect", "queues", "--json")).json()[0]["served"] is None
    table = await cli("inspect", "queues")
    assert table.code == 0, table
    row = table.out.splitlines()[2]
    assert row.split()[0] == "work"
    assert row.split()[-1] != "NO", table.out


async def test_enqueue_that_stored_its_job_does_not_fail(
    cli: Cli,  # noqa: F811
    redis: Redis,
    namespace: str,
) -> None:
    """Fails on main: the job is stored and its id printed, then the served names' read (for a
    warning) raises WRONGTYPE, with no repair, and the command exits 1: a caller (a script)
    told the enqueue failed enqueues again, and the job is stored twice."""
    keys = Keys(namespace)
    await redis.set(keys.pools, "hand edit")
    r = await cli("enqueue", "work")
    assert await redis.hlen(keys.jobs) == 1
    assert r.code == 0, r
