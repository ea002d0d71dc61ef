"""A registered job function passed where a job name goes (``enqueue(send_email, {...})``) is
refused with what to pass instead: its name, or a call of its own ``enqueue``, whose arguments
are checked against the handler's signature (by mypy too); the name-based ``enqueue`` takes
an untyped dict, so accepting the function there would skip that check."""

from __future__ import annotations

import re
from typing import Any

import pytest
from redis.asyncio import Redis

from errands import Enqueuer, FakeClock, WorkerPool
from errands.store.keys import Keys


async def test_a_job_function_given_as_the_name_is_refused_saying_what_to_pass(
    redis: Redis, namespace: str
) -> None:
    pool = WorkerPool(redis, namespace=namespace)

    @pool.job("send_email")
    async def send_email(to: str) -> None: ...

    def plain(to: str) -> None: ...

    wrong: Any = send_email  # (mypy refuses it: a job name is a str)
    hint = "pass its name ('send_email'), or call send_email.enqueue(...)"
    async with Enqueuer(redis, namespace=namespace, clock=FakeClock(), strict=None) as enq:
        with pytest.raises(ValueError, match=re.escape(hint)) as raised:
            await enq.enqueue(wrong, {"to": "a@example.com"})
        assert str(raised.value).startswith("invalid job name <JobFunction send_email")
        with pytest.raises(ValueError, match=re.escape(hint)):
            await enq.enqueue_many([(wrong, {"to": "a@example.com"})])
        unregistered: Any = plain
        with pytest.raises(ValueError, match=r"pass the name it is registered under"):
            await enq.enqueue(unregistered, {"to": "a@example.com"})
        # a bad string name: the naming rule, as before
        with pytest.raises(ValueError, match="use 1-200 characters"):
            await enq.enqueue("send email", {})
    assert [k async for k in redis.scan_iter(match=Keys(namespace).prefix + "*")] == []
