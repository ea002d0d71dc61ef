"""The rate waits (``pwait``) 9d51348 declared in cancel.lua, destroy.lua, move.lua and
enqueue_dedup.lua are checked as ZSETs before the first write: a wait key of another type (written
by hand) fails the call with it named, nothing written. Unchecked, the call took the job's index
entry (and the job) away, then raised in ZREM of the wait (the partition's last job while another
partition's is indexed), or DEL dropped the key whatever it held (the name's last job)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from errands import Dedup, Enqueuer
from errands.store.keys import Keys
from errands.store.scripts import Scripts
from tests.support.resend import refused

Call = Callable[[Scripts, Enqueuer, str], Awaitable[Any]]

# (the scripts called directly: Client.job(), which the admin calls ask first, reads the wait
# for the job's waiting reason; it names the key since, and goes on: test_flow_key_types.py)
CALLS: dict[str, tuple[Call, str]] = {
    "cancel": (lambda s, _e, j: s.cancel(j, "sms", 1, 60_000), "nothing cancelled"),
    "destroy": (lambda s, _e, j: s.destroy(j, "sms", 1, call="c1"), "nothing destroyed"),
    "delete": (
        lambda s, _e, j: s.move(j, "sms", s.keys.queue("sms"), "delete", now_ms=1),
        "nothing moved",
    ),
    "debounce": (  # pushed back: off the queue, into the scheduled set
        lambda _s, e, _j: e.enqueue("sms", {}, dedup=Dedup("k", debounce=True), delay=60),
        "nothing stored",
    ),
}


@pytest.mark.parametrize("last", [True, False], ids=["name's last", "partition's last"])
@pytest.mark.parametrize("how", sorted(CALLS))
async def test_a_wait_key_of_another_type_fails_the_call_before_any_write(
    redis: Redis, namespace: str, how: str, last: bool
) -> None:
    keys = Keys(namespace)
    call, nothing = CALLS[how]
    async with Enqueuer(redis, namespace=namespace, strict=None) as enq:
        job = await enq.enqueue("sms", {}, partition="A", dedup=Dedup("k", debounce=True))
        assert job is not None
        if not last:
            await enq.enqueue("sms", {}, partition="B")
        wait = keys.partitions_waiting("sms")
        await redis.set(wait, "x")
        scripts = Scripts(redis, keys)
        await refused(redis, namespace, call(scripts, enq, job.id), rf"{wait}.*{nothing}")
    assert await redis.get(wait) == b"x"
