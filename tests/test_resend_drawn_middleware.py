"""f497c8f (a re-sent enqueue of a random id reports ``existed`` False) with an enqueue middleware.

The override trusts an id drawn by the call to be stored only by the call itself. In
``enqueue_many`` the drawn ids are a set over the whole call, taken before the enqueue
middleware: a middleware that gives one job of the call another job's drawn id (an in-process
coalescing middleware: "same key -> the first job's id, so Redis stores it once") makes the
second job's "already there" (listed by enqueue.lua: "an earlier job of this call has it")
answered as stored. docs/enqueueing.md: "An id an enqueue middleware set is treated as one of
your own", and ``enqueue`` (per call) keeps ``existed`` for the same middleware."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from errands import Enqueuer, Job, Middleware
from errands.store.keys import Keys


class Coalescing(Middleware):
    """Jobs of the same args get the id of the first such job seen."""

    def __init__(self) -> None:
        self.ids: dict[str, str] = {}

    async def enqueue(self, job: Job, next: Any) -> Any:
        job.id = self.ids.setdefault(repr(sorted(job.args.items())), job.id)
        return await next()


async def test_enqueue_keeps_existed_for_a_middleware_given_id(
    redis: Redis, namespace: str
) -> None:
    async with Enqueuer(redis, namespace=namespace, middleware=[Coalescing()]) as enqueuer:
        first = await enqueuer.enqueue("work", {"x": 1})
        second = await enqueuer.enqueue("work", {"x": 1})
    assert first is not None and second is not None and first.id == second.id
    assert (first.existed, second.existed) == (False, True)  # passes: per-call drawn id


async def test_enqueue_many_keeps_existed_for_a_middleware_given_id(
    redis: Redis, namespace: str
) -> None:
    """The second job is told ``existed`` True: nothing was stored for it, its id is the first
    job's, drawn by the same call (only a job's own draw, carried by no other job, counts)."""
    async with Enqueuer(redis, namespace=namespace, middleware=[Coalescing()]) as enqueuer:
        jobs = await enqueuer.enqueue_many([("work", {"x": 1}), ("work", {"x": 1})])
    assert jobs[0].id == jobs[1].id
    assert await redis.hlen(Keys(namespace).jobs) == 1  # type: ignore[misc]
    assert [j.existed for j in jobs] == [False, True]
