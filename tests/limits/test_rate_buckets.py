"""Rate logs count starts in buckets of per / 1000, rounded up to a ms (lib/ratelog.lua): a log
holds at most a record per bucket of its window whatever the limit; never more than n start in
any window of per; a start is refused only when an exact sliding log of a window one bucket
longer would refuse it, and lets one in at the time it says; limits up to 10^9 are accepted and
enforced; a give-back uncounts its start from its bucket's record only when that is safe. The
Redis clock is the one of the test: the limiter script (the same lim_room and lim_started as a
fetch) reads TIME from a key."""

from __future__ import annotations

import random
from datetime import timedelta
from importlib import resources

import pytest
from redis.asyncio import Redis

from errands import Rate
from errands.limits import compile_limits
from errands.limits.spec import MAX_RATE, RATE_BUCKETS
from errands.store.keys import Keys
from errands.store.luasource import lua_source
from tests.support.invariants import assert_invariants
from tests.support.ready import ready_to_fetch

from .test_giveback import _counted, _settler

TIME = "redis.call('TIME')"
# (the clock a hash: limiter.lua checks each key's type)
CLOCK = "{string.match(redis.call('HGET', KEYS[2], 't'), '^(%d+) (%d+)$')}"
EMPTY, RECORD = len("#0000000000"), 23
B = 1_800_000_000_000  # a time on a bucket's edge for every width below


def _width(per: int) -> int:
    return -(-per // RATE_BUCKETS)


class Clocked:
    """limiter.lua of one rate on a log of the test's namespace, at the time it is given."""

    def __init__(self, redis: Redis, namespace: str, n: int, per: int) -> None:
        self.redis, self.rate = redis, (n, per)
        self.log = Keys(namespace).rate_log("api")
        self.clock = self.log + ":clock"
        self.sha = ""

    async def take(self, ms: int) -> int:
        """0 when a start was taken at ``ms``, else the ms until the rate lets one."""
        if not self.sha:
            assert TIME in lua_source("limiter")
            self.sha = await self.redis.script_load(lua_source("limiter").replace(TIME, CLOCK))
        await self.redis.hset(self.clock, "t", f"{ms // 1000} {ms % 1000 * 1000}")
        return int(await self.redis.evalsha(self.sha, 2, self.log, self.clock, *self.rate))

    async def records(self) -> int:
        log = await self.redis.hget(self.log, str(self.rate[1]))
        return 0 if log is None else (len(log) - EMPTY) // RECORD


async def test_a_log_holds_at_most_a_record_per_bucket_whatever_the_limit(
    redis: Redis, namespace: str
) -> None:
    """7,500 single starts 1 to 3 ms apart in a window of 10 s (buckets of 10 ms): a log of one
    record per call held about 5,000 records (115 KB), read and written whole per call."""
    per = 10_000
    limiter, rng, now = Clocked(redis, namespace, MAX_RATE, per), random.Random(7), B
    for i in range(7_500):
        now += rng.randint(1, 3)
        assert await limiter.take(now) == 0
        if i % 250 == 0:
            assert await limiter.records() <= RATE_BUCKETS + 2
    assert now - B > per  # (the window passed over the log's first records)
    assert RATE_BUCKETS - 1 <= await limiter.records() <= RATE_BUCKETS + 2


@pytest.mark.parametrize(
    ("n", "per"), [(3, 100), (5, 10_000), (50, 60_000), (4, 86_400_000), (7, 1_000_001)]
)
async def test_never_more_than_n_in_a_window_and_at_most_a_bucket_late(
    redis: Redis, namespace: str, n: int, per: int
) -> None:
    """Random steps of the clock (within a bucket, across a few, across the window): a start
    taken at t leaves fewer than n of those taken before in [t - per, t] (an exact log's
    count); one refused at t has n or more in [t - per - w + 1, t] (an exact log of a window
    w - 1 ms longer refuses it too); and the wait a refusal answers is exact: 1 ms earlier it
    is refused again, then it is taken."""
    w, rng = _width(per), random.Random(per)
    limiter, now, taken = Clocked(redis, namespace, n, per), B + rng.randrange(per), []
    for _ in range(400):
        now += rng.choice([0, 1, w // 2, w, per // 7, per // 3, per]) + rng.randrange(w)
        wait = await limiter.take(now)
        exact = sum(1 for t in taken if t >= now - per)
        if wait == 0:
            assert exact < n, (now, taken)
            taken.append(now)
            continue
        assert sum(1 for t in taken if t >= now - per - w + 1) >= n, (now, taken)
        assert 1 <= wait <= per + w
        if rng.random() < 0.5:
            assert await limiter.take(now + wait - 1) > 0
            now += wait
            assert sum(1 for t in taken if t >= now - per) < n
            assert await limiter.take(now) == 0
            taken.append(now)
    assert len(taken) > 3 * n  # (the rate let starts in, and refused some)


async def test_a_large_limit_is_accepted_and_enforced(redis: Redis, namespace: str) -> None:
    """Rate(100_000, per=1 day) was refused (limits of 1..10000); its log at 99,999 starts lets
    one more in, then none until the first start's day passes."""
    keys = Keys(namespace)
    day = Rate(100_000, per=timedelta(days=1))
    _conc, spec = compile_limits([day])
    scripts = await ready_to_fetch(redis, namespace, [("sms", {})] * 8)
    secs, micros = await redis.time()
    now = int(secs) * 1000 + int(micros) // 1000
    # (its record buckets earlier than now: a start in the same bucket, 86.4 s wide, would join
    # it and move it to now, and the wait would be a whole day from now, as buckets allow)
    early = now - 300_000
    await redis.hset(keys.rate_log("sms"), "86400000", f"#{0:010d}{early:013d}{99_999:010d}")
    got = await scripts.fetch("p", 1, 8, [("sms", 0)], specs={"sms": spec})
    assert len(got) == 1
    again = await scripts.fetch("p", 1, 8, [("sms", 0)], specs={"sms": spec})
    secs, micros = await redis.time()
    after = int(secs) * 1000 + int(micros) // 1000
    free = early + 86_400_000 + 1  # (the first start leaves the window)
    assert len(again) == 0 and again.wait is not None
    assert (free - after) / 1000 - 0.002 <= again.wait <= (free - now) / 1000 + 0.002
    assert Rate(MAX_RATE).limit == 10**9
    with pytest.raises(ValueError, match=r"Rate limit must be 1\.\.1000000000,"):
        Rate(MAX_RATE + 1)
    await assert_invariants(redis, namespace)


async def test_a_large_limit_counts_past_the_rebase(redis: Redis, namespace: str) -> None:
    """A log's counts near 9e9 start again from 0 (10 digits): with a limit of 10^9 the live
    starts are kept, and the limit still holds."""
    n, per = MAX_RATE, 60_000
    limiter = Clocked(redis, namespace, n, per)
    old = f"#{8_999_999_998 - n + 5:010d}{B - 30:013d}{8_999_999_998:010d}"
    await redis.hset(limiter.log, str(per), old)  # n - 5 live starts, the count near 9e9
    for i in range(5):
        assert await limiter.take(B + 100 * i) == 0  # (each in a bucket of its own)
    assert await limiter.take(B + 500) > 0
    log = await redis.hget(limiter.log, str(per))
    assert log is not None and int(log[-10:]) < 2 * n  # started again from 0
    assert await limiter.take(B + 30 + per) == 0  # the n - 5 left the window


# lim_uncounted alone: lib/ratelog.lua's text, and a line calling it
UNCOUNT = "return lim_uncounted(ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), function() return tonumber(ARGV[4]) end) or false"  # noqa: E501


def _log(base: int, *records: tuple[int, int]) -> str:
    return f"#{base:010d}" + "".join(f"{t:013d}{c:010d}" for t, c in records)


@pytest.mark.parametrize(
    ("log", "at", "now", "after"),
    [
        # the record of at's bucket, moved on by later starts: one start less there
        (_log(0, (B + 30, 3)), B + 10, B + 100, _log(0, (B + 30, 2))),
        # its window passed and nothing before it: it may be a later record of the bucket
        # (by an errands before buckets) after the start's own was cut: left counted
        (_log(0, (B + 30, 3)), B + 10, B + 10 + 60_001, None),
        # a record before it stayed: the start's own was not cut
        (
            _log(0, (B - 100, 1), (B + 30, 4)),
            B + 10,
            B + 60_100,
            _log(0, (B - 100, 1), (B + 30, 3)),
        ),
        # exactly at `at`, as before buckets (a window passed or not); the record dropped at 0
        (_log(5, (B + 10, 6)), B + 10, B + 90_000, _log(5)),
        # records of one ms each in at's bucket (before buckets): the first at or after `at`
        (_log(0, (B + 5, 1), (B + 20, 2)), B + 10, B + 100, _log(0, (B + 5, 1))),
        # a record of a later bucket (at's was cut, or a clock gone back): left counted
        (_log(0, (B + 70, 2)), B + 10, B + 100, None),
        (_log(0, (B + 5, 2)), B + 10, B + 100, None),  # nothing at or after `at`
        ("junk", B + 10, B + 100, None),
    ],
)
async def test_a_give_back_uncounts_from_its_buckets_record_when_safe(
    redis: Redis, log: str, at: int, now: int, after: str | None
) -> None:
    lib = resources.files("errands.store").joinpath("lua/lib/ratelog.lua").read_text()
    got = await redis.eval(lib + "\n" + UNCOUNT, 0, log, at, 60_000, now)
    assert got == (after.encode() if after else None)


async def test_a_given_back_start_merged_with_later_ones_is_uncounted(
    redis: Redis, namespace: str
) -> None:
    """Two fetches of a day's rate in one bucket (86.4 s) share a record, at the second's time:
    the first's give-back (settle.lua, at the time its fetch counted it) uncounts it there."""
    scripts = await ready_to_fetch(redis, namespace, [("sms", {})] * 12)
    specs = {"sms": "r=10/86400000"}
    first = await scripts.fetch("p", 1, 1, [("sms", 0)], specs=specs)
    second = await scripts.fetch("p", 1, 1, [("sms", 0)], specs=specs)
    assert len(first) == len(second) == 1 and await _counted(redis, namespace, "86400000") == 2
    await _settler(scripts).requeue_fetched(first[0], "sms")
    assert await _counted(redis, namespace, "86400000") == 1
    rest = await scripts.fetch("p", 1, 12, [("sms", 0)], specs=specs)
    assert len(rest) == 9
    await assert_invariants(redis, namespace)


async def test_a_start_on_a_clock_gone_back_joins_the_last_record(
    redis: Redis, namespace: str
) -> None:
    """A start at a time before the log's last record (the Redis clock went back: a failover) is
    counted at that record's time, in it: the log stays in time order (it was appended out of
    order), and the start is counted later than it happened, never earlier."""
    limiter = Clocked(redis, namespace, 10, 60_000)
    assert await limiter.take(B + 100) == 0
    assert await limiter.take(B + 40) == 0  # (a bucket of 60 ms before)
    assert await redis.hget(limiter.log, "60000") == _log(0, (B + 100, 2)).encode()


async def test_a_log_of_a_record_per_ms_counts_as_written(redis: Redis, namespace: str) -> None:
    """The form errands before buckets wrote (a record per ms with starts, several in a bucket)
    is read as it is: its starts count at their own times, and leave the window one by one; a
    start joins only its last record."""
    limiter = Clocked(redis, namespace, 4, 60_000)
    await redis.hset(limiter.log, "60000", _log(0, (B + 1, 1), (B + 2, 2), (B + 3, 3)))
    assert await limiter.take(B + 10) == 0
    assert (
        await redis.hget(limiter.log, "60000")
        == _log(0, (B + 1, 1), (B + 2, 2), (B + 10, 4)).encode()
    )
    assert await limiter.take(B + 20) == B + 1 + 60_001 - (B + 20)
    assert await limiter.take(B + 60_002) == 0  # the start at B + 1 left
    assert await limiter.take(B + 60_002) == 1  # the one at B + 2 leaves 1 ms later
