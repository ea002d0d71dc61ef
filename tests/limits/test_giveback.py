"""A job fetched ahead and given back before it started (worker/lookahead.py) had its start
counted in its rates by the fetch: the give-back (lua/settle.lua, a requeue fenced on the
attempt) uncounts it, once, so give-backs spend no rate budget; the starts that happened stay
counted, so a rate never lets more than n start in any window."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Awaitable

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from errands.clock import SystemClock
from errands.enqueuer import EnqueueItem
from errands.serialization import JSONSerializer
from errands.store.keys import Keys
from errands.store.scripts import Fetched, Scripts, Settle
from errands.store.settlecall import read_settle_reply, settle_request, settled_or_raise
from errands.worker.settler import Settler
from tests.support.invariants import assert_invariants
from tests.support.ready import ready_to_fetch


def _ready(redis: Redis, namespace: str, jobs: int, partition: str = "") -> Awaitable[Scripts]:
    """``jobs`` jobs of "sms" enqueued (of ``partition``) and pools p and q registered."""
    opts = {"partition": partition} if partition else {}
    items: list[EnqueueItem] = [("sms", {}, opts) for _ in range(jobs)]
    return ready_to_fetch(redis, namespace, items, pools=("p", "q"))


def _settler(scripts: Scripts, pool: str = "p") -> Settler:
    return Settler(
        scripts, pool, SystemClock(), JSONSerializer(), dead_max_jobs=10, dead_max_age=60.0,
        history=False,
    )  # fmt: skip


async def _counted(redis: Redis, namespace: str, field: str) -> int:
    """The starts a rate log holds (the last record's running count, less the first's base)."""
    log = await redis.hget(Keys(namespace).rate_log("sms"), field)
    if not log:
        return 0
    return int(log[-10:]) - int(log[1:11])


@pytest.mark.parametrize(
    ("spec", "partition", "field"),
    [("r=4/60000", "", "60000"), ("R=4/60000;c=9", "acme", "60000:acme")],
    ids=["type-wide", "per-partition"],
)
async def test_a_job_given_back_unstarted_spends_no_rate_budget(
    redis: Redis, namespace: str, spec: str, partition: str, field: str
) -> None:
    scripts = await _ready(redis, namespace, 8, partition)
    specs = {"sms": spec}
    got = await scripts.fetch("p", 1, 8, [("sms", 0)], specs=specs)
    assert len(got) == 4 and all(f.rate_spec == spec and f.counted_ms > 0 for f in got)
    assert await scripts.fetch("p", 1, 8, [("sms", 0)], specs=specs) == []  # 4 of 4 spent
    settler = _settler(scripts)
    for item in got[:2]:
        await settler.requeue_fetched(item, "sms")  # held ahead, never started: back
    assert await _counted(redis, namespace, field) == 2
    again = await scripts.fetch("p", 1, 8, [("sms", 0)], specs=specs)
    assert sorted(f.id for f in again) == sorted(f.id for f in got[:2])  # at their places
    assert await _counted(redis, namespace, field) == 4
    assert await scripts.fetch("p", 1, 8, [("sms", 0)], specs=specs) == []
    await assert_invariants(redis, namespace)


async def test_only_the_attempt_that_counted_a_start_uncounts_it_once(
    redis: Redis, namespace: str
) -> None:
    scripts = await _ready(redis, namespace, 4)
    specs = {"sms": "r=3/60000"}
    got = await scripts.fetch("p", 1, 3, [("sms", 0)], specs=specs)
    assert len(got) == 3
    item = got[0]
    give_back = Settle(item.id, "sms", "requeue", scripts.keys.queue("sms"), 1, 1, history=False)
    give_back.token, give_back.score_ms = item.token, item.score
    give_back.unstart, give_back.unstart_spec = True, item.rate_spec
    fenced = dataclasses.replace(give_back, token=item.token + "0")  # another attempt
    assert not await scripts.settle("p", fenced)
    assert not await scripts.settle("q", give_back)  # another pool
    assert await _counted(redis, namespace, "60000") == 3
    assert await scripts.settle("p", give_back)
    assert await _counted(redis, namespace, "60000") == 2
    assert await scripts.settle("p", give_back)  # a re-send: answers as the first, writes nothing
    assert await _counted(redis, namespace, "60000") == 2
    assert len(await scripts.fetch("p", 1, 3, [("sms", 0)], specs=specs)) == 1


@pytest.mark.parametrize("skew_ms", [-7_000, 7_000])
async def test_a_give_back_uncounts_the_start_its_fetch_counted_whatever_the_host_says(
    redis: Redis, namespace: str, skew_ms: int
) -> None:
    """REVIEW F8: the time of the start to uncount is the one the fetch recorded with the
    attempt, in Redis, not one the pool sends (here its record of it is off by 7 s, as from a
    host whose clock is skewed): it uncounted nothing, or the start of another fetch."""
    scripts = await _ready(redis, namespace, 8)
    specs = {"sms": "r=4/60000"}
    got = await scripts.fetch("p", 1, 8, [("sms", 0)], specs=specs)
    assert len(got) == 4
    skewed = dataclasses.replace(got[0], counted_ms=got[0].counted_ms + skew_ms)
    await _settler(scripts).requeue_fetched(skewed, "sms")
    assert await _counted(redis, namespace, "60000") == 3
    again = await scripts.fetch("p", 1, 8, [("sms", 0)], specs=specs)
    assert [f.id for f in again] == [got[0].id]
    await assert_invariants(redis, namespace)


async def test_a_bad_start_to_uncount_fails_before_anything_is_written(
    redis: Redis, namespace: str
) -> None:
    scripts = await _ready(redis, namespace, 1)
    (item,) = await scripts.fetch("p", 1, 1, [("sms", 0)], specs={"sms": "r=3/60000"})
    before = {k: await redis.dump(k) for k in await redis.keys(f"*{namespace}*")}
    for flag, spec in [("x", "r=3/60000"), ("5", "r=3/60000"), ("1", "r=0/1"), ("1", "q=1")]:
        s = Settle(item.id, "sms", "requeue", scripts.keys.queue("sms"), 1, 1, history=False)
        s.token, s.unstart, s.unstart_spec = item.token, True, spec
        keys, args = settle_request(scripts.keys, "p", s)
        args[20] = flag  # (ARGV[21]: '1' or '')
        with pytest.raises(ResponseError, match="settle"):
            settled_or_raise(read_settle_reply(await scripts._call("settle", keys, args), 1))
    after = {k: await redis.dump(k) for k in await redis.keys(f"*{namespace}*")}
    assert after == before


@pytest.mark.parametrize("per", [60_000, 3])
async def test_fuzz_give_backs_never_let_more_than_n_start_in_a_window(
    redis: Redis, namespace: str, per: int
) -> None:
    """Random fetches, give-backs (and re-sends of them) and acks against a rate of 5 per
    ``per`` ms: the starts that were not given back, at the times their fetch counted them,
    never number more than 5 in any window of ``per`` ms (a start at t counts until t + per);
    with a window of a minute (no time passes) every give-back frees its start for another."""
    rng = random.Random(per)
    n, spec = 5, f"r=5/{per}"
    scripts = await _ready(redis, namespace, 300)
    settler = _settler(scripts)
    held: list[Fetched] = []
    kept: list[int] = []  # the counted times of the starts that happened
    for _ in range(120):
        roll = rng.random()
        if roll < 0.5:
            asked, budget = rng.randint(1, 4), n - len(kept) - len(held)
            got = await scripts.fetch("p", 1, asked, [("sms", 0)], specs={"sms": spec})
            held += got
            if per > 1000:  # no time passes: exactly the budget left, given-back starts too
                assert len(got) == min(asked, budget)
        elif held and roll < 0.8:
            item = held.pop(rng.randrange(len(held)))
            await settler.requeue_fetched(item, "sms")
            if rng.random() < 0.3:
                await settler.requeue_fetched(item, "sms")  # a re-send
        elif held:
            item = held.pop(rng.randrange(len(held)))
            kept.append(item.counted_ms)  # it started
        live = sorted(kept + [f.counted_ms for f in held])
        for i, t in enumerate(live):
            assert sum(1 for u in live[i:] if u <= t + per) <= n, (live, per)
    if per > 1000:
        assert len(kept) + len(held) == n
