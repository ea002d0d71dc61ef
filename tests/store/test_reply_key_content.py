"""A call's reply key (store/keys.py reply) is read back by its re-send only when it holds an
answer of that script: cancel.lua answered whatever its reply key held (a key written by hand, or
a token given again to another script's call), and replace_envelope.lua answered 1 for any
content; enqueue_dedup.lua refused such a key already. Each now fails the call by name before
any write. The TTLs are lib/types.lua's two constants: 2 minutes for the enqueue path
(enqueue_dedup, replace_envelope), 10 minutes for the admin calls (cancel, as destroy, move and
wf_cancel)."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from errands import Enqueuer
from errands.store.keys import Keys
from errands.store.scripts import Scripts
from tests.support.resend import refused

NOW = 1_767_225_600_000


@pytest.mark.parametrize("content", ["garbage", "1", ""])
async def test_a_cancel_whose_reply_key_holds_no_answer_of_cancel_is_refused(
    redis: Redis, namespace: str, content: str
) -> None:
    keys = Keys(namespace)
    job = await Enqueuer(redis, namespace=namespace).enqueue("work")
    assert job is not None
    await redis.set(keys.reply("c1"), content)
    call = Scripts(redis, keys).cancel(job.id, "work", NOW, 60_000, "c1")
    await refused(redis, namespace, call, "reply:c1 holds no answer of this script: nothing can")


async def test_a_cancel_keeps_its_answer_ten_minutes(redis: Redis, namespace: str) -> None:
    keys = Keys(namespace)
    job = await Enqueuer(redis, namespace=namespace).enqueue("work")
    assert job is not None
    assert await Scripts(redis, keys).cancel(job.id, "work", NOW, 60_000, "c1") == "cancelled"
    assert 590_000 < await redis.pttl(keys.reply("c1")) <= 600_000
    assert await redis.get(keys.reply("c1")) == b"cancelled"


async def test_a_swap_whose_reply_key_holds_no_answer_of_it_is_refused(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    await redis.set(keys.reply("c2"), "cancelled")
    swap = Scripts(redis, keys).replace_envelope("d", "j", b"a", b"b", call="c2")
    await refused(redis, namespace, swap, "reply:c2 holds no answer of this script: nothing rep")
