"""An in-progress entry is "<id>:<name>", and ids and names may hold ':': job "a:b" of name "c"
and job "a" of name "b:c" have the same entry. Acknowledged together, in a pool whose
in-progress set holds as many members as the call's entries (theirs and another job's), the
other job's entry stays: ack.lua removes the entries of the jobs it acknowledges, no other."""

from __future__ import annotations

import json

from redis.asyncio import Redis

from errands.store.ackcall import ack_request
from errands.store.keys import Keys
from errands.store.luasource import lua_source
from errands.store.records import Acked


async def test_a_shared_entry_leaves_the_other_jobs_entry(redis: Redis, namespace: str) -> None:
    k = Keys(namespace)
    for job_id, name in (("a:b", "c"), ("a", "b:c"), ("x", "w")):
        await redis.hset(k.jobs, job_id, json.dumps({"n": name, "a": {}}))
        await redis.hset(k.attempts, job_id, "p:7")
        await redis.zadd(k.in_progress("p"), {f"{job_id}:{name}": 1})
        await redis.hincrby(k.running, name, 1)
    assert await redis.zcard(k.in_progress("p")) == 2  # ("a:b:c" once, "x:w")
    done = [Acked("a:b", "c", b"1", 5, 60_000, 1, "7"), Acked("a", "b:c", b"1", 5, 60_000, 1, "7")]
    keys, args = ack_request(k, "p", done, False, 7, False)
    sha = await redis.script_load(lua_source("ack"))
    assert await redis.evalsha(sha, len(keys), *keys, *args) == [2, 0]
    assert await redis.zrange(k.in_progress("p"), 0, -1) == [b"x:w"]  # x still runs
    assert await redis.hget(k.attempts, "x") == b"p:7"
