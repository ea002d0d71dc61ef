"""``errands edit ID --args JSON --priority N``: Client.update_job from the command line."""

from __future__ import annotations

from redis.asyncio import Redis

from errands import Client, Enqueuer

from .test_admin import Cli


async def test_edit_from_the_command_line(redis: Redis, redis_url: str, namespace: str) -> None:
    cli = Cli(redis_url, namespace)
    async with Enqueuer(redis, namespace=namespace, strict=None) as enqueuer:
        job = await enqueuer.enqueue("report", {"day": 1})
    assert job is not None
    done = await cli("edit", job.id, "--args", '{"day": 2}', "--priority", "7", "--json")
    assert done.code == 0, done
    assert done.json() == {"id": job.id, "status": "queued", "args": {"day": 2}, "priority": 7}
    async with Client(redis, namespace=namespace) as client:
        info = await client.job(job.id)
    assert info is not None and (info.args, info.priority) == ({"day": 2}, 7)
    bad = await cli("edit", job.id, "--args", "[1]")
    assert bad.code == 2 and "JSON object" in bad.err
    nothing = await cli("edit", job.id)
    assert nothing.code == 2 and "args and/or priority" in nothing.err
    unknown = await cli("edit", "nope", "--priority", "1")
    assert unknown.code == 1 and "no job" in unknown.err
