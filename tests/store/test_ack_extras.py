"""An ack call carries six values a job (id, name index, result, started, attempt, token), a
job name and its result TTL once per name, and four more (the job's place, TTL and two
envelopes) only for a job whose TTL is not its name's or that gives an envelope: ten a job
before, which the worker packed and Redis parsed (about 580 instructions an argument). A bad
extra fails the call before its first write."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis

from errands import Enqueuer
from errands.store.ackcall import ack_request
from errands.store.keys import Keys
from errands.store.scripts import Acked, Scripts
from tests.support.resend import refused

NAMES = ("work", "mail")


async def fetched(redis: Redis, namespace: str) -> tuple[Scripts, list[Acked]]:
    """Two jobs of ``work`` and one of ``mail`` fetched by pool p1, as acks of TTL 60 s."""
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    async with Enqueuer(redis, namespace=namespace) as enq:
        for name in ("work", "mail", "work"):
            await enq.enqueue(name, {"n": 1})
    await scripts.heartbeat("p1", b"{}", 60_000, mode="register")
    got = await scripts.fetch("p1", 0, 10, [(n, 0) for n in NAMES])
    assert got is not None and len(got) == 3
    return scripts, [
        Acked(f.id, NAMES[f.queue_index - 1], b"1", 1_000, 60_000, 1, f.token) for f in got
    ]


def test_a_job_of_its_names_ttl_and_no_envelope_carries_six_values() -> None:
    keys = Keys("t")
    done = [Acked(f"j{i}", NAMES[i % 2], b"1", 1_000 + i, 60_000, 1, f"{i}") for i in range(5)]
    call, args = ack_request(keys, "p1", done, False, 5_000, True)
    assert len(call) == 25 + 5 + 5 * 2  # every done record declared, five keys a name
    assert args[7:11] == [0, "work", 60_000, "mail"]  # no extras; each name and its TTL
    assert args[12:] == [
        v for i in range(5) for v in (f"j{i}", i % 2 + 1, b"1", 1_000 + i, 1, f"{i}")
    ]


def test_another_ttl_or_an_envelope_comes_as_an_extra() -> None:
    done = [Acked(f"j{i}", "work", b"1", 1, 60_000, 1, "t") for i in range(4)]
    done[1].ttl_ms = 0
    done[2].envelope_json = b'{"n":"work"}'
    done[3].history_json = b'{"n":"work","a":"<omitted>"}'
    args = ack_request(Keys("t"), "p1", done, False, 5_000, True)[1]
    assert args[7] == 3 and len(args) == 8 + 2 + 6 * 4 + 4 * 3
    assert args[-12:] == [2, 0, b"", b"", 3, 60_000, b'{"n":"work"}', b"",
                          4, 60_000, b"", b'{"n":"work","a":"<omitted>"}']  # fmt: skip


async def test_extras_are_written_as_their_jobs_give_them(redis: Redis, namespace: str) -> None:
    keys = Keys(namespace)
    scripts, done = await fetched(redis, namespace)
    done[1].ttl_ms = 5_000
    done[2].envelope_json = b'{"n":"x","a":{}}'
    assert await scripts.ack("p1", done, False, 5_000, False) == []
    ttls = [await redis.pttl(keys.done(a.id)) for a in done]
    assert 55_000 < ttls[0] <= 60_000 and 0 < ttls[1] <= 5_000 and 55_000 < ttls[2] <= 60_000
    record = await redis.get(keys.done(done[2].id))
    assert record is not None and record.startswith(b'{"j":{"n":"x","a":{}},"r":1,"b":1000,')


@pytest.mark.parametrize(
    ("at", "value"),
    [(-4, "0"), (-4, "4"), (-4, "x"), (-4, "1.5"), (-3, "-1"), (-3, "007"), (-3, "2" * 19)],
    ids=["place-0", "place-over", "place-nan", "place-fraction", "ttl-negative", "ttl-zeros",
         "ttl-long"],
)  # fmt: skip
async def test_a_bad_extra_acknowledges_nothing(
    redis: Redis, namespace: str, at: int, value: Any
) -> None:
    scripts, done = await fetched(redis, namespace)
    done[1].ttl_ms = 5_000
    call, args = ack_request(scripts.keys, "p1", done, False, 5_000, True)
    assert args[7] == 1 and args[-4] == 2
    args[at] = value
    await refused(redis, namespace, scripts._s["ack"](keys=call, args=args), "errands: ack: ")


@pytest.mark.parametrize("second", [1, 2], ids=["before", "same"])
async def test_extras_out_of_order_acknowledge_nothing(
    redis: Redis, namespace: str, second: int
) -> None:
    """Two extras of one job (or out of order) would leave one of them unread."""
    scripts, done = await fetched(redis, namespace)
    done[1].ttl_ms = 5_000
    call, args = ack_request(scripts.keys, "p1", done, False, 5_000, True)
    args[7] = 2
    args += [second, 1_000, b"", b""]
    await refused(redis, namespace, scripts._s["ack"](keys=call, args=args), "errands: ack: ")


async def test_a_name_listed_twice_acknowledges_nothing(redis: Redis, namespace: str) -> None:
    """Each name index frees its jobs' slots from the counts it read before any write: a name
    under two indexes would write one of the two back over the other (a slot held for good)."""
    scripts, done = await fetched(redis, namespace)
    call, args = ack_request(scripts.keys, "p1", done, False, 5_000, True)
    assert args[8] == "work" and args[10] == "mail"
    args[10] = "work"
    await refused(
        redis, namespace, scripts._s["ack"](keys=call, args=args), "errands: ack: name work listed"
    )
