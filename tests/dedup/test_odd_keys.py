"""Dedup keys at the edges of their validation: any character but braces, newlines and NUL,
1-1,000 of them (not bytes), each a key of its own; a key that cannot be spelt in UTF-8 (a lone
surrogate) is refused by ``Dedup`` with a ValueError, as the other bad keys are (it reached
redis-py, which raised UnicodeEncodeError while sending the call)."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from errands import Dedup, Enqueuer
from errands.store.keys import Keys
from tests.support.invariants import assert_invariants

ODD = ["\U0001f600" * 1000, "a:b:c", " ", "\t", "x y", "é", "user:7 ", "user:7", "*", "[a]"]


async def test_odd_keys_are_keys_of_their_own(
    redis: Redis, namespace: str, enqueuer: Enqueuer
) -> None:
    held: dict[str, str] = {}
    for key in ODD:
        job = await enqueuer.enqueue("sync", {"k": key}, dedup=Dedup(key, until="finished"))
        assert job is not None and job.dedup is not None and job.dedup.enqueued
        held[key] = job.id
    for key in ODD:
        again = await enqueuer.enqueue("sync", {}, dedup=Dedup(key, until="finished"))
        assert again is not None and again.dedup is not None
        assert (again.dedup.status, again.dedup.holder, again.dedup.key) == (
            "dropped", held[key], key,
        )  # fmt: skip
        window = await enqueuer.enqueue("sync", {}, dedup=Dedup(key, throttle=60))
        assert window is not None and window.dedup is not None and window.dedup.enqueued
    assert await redis.hlen(Keys(namespace).dedup) == len(ODD)
    await assert_invariants(redis, namespace)


@pytest.mark.parametrize("key", ["\ud800", "a\udfffb", "\r", "x" * 1001, "{", "}"])
def test_a_key_that_cannot_be_stored_is_refused(key: str) -> None:
    with pytest.raises(ValueError):
        Dedup(key)
