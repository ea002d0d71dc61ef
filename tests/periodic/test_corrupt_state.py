"""A corrupt schedule state (a `last` that is no fire time in ms, a counter that is no integer:
written by hand, a bad restore) never takes the other schedules down: it is not fired until
repaired, logged once, refused by schedule_fire.lua before its first write, and listed as
corrupt by ``Client.schedules()``, ``errands schedules list`` and the dashboard."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

import errands
from errands import Client, FakeClock
from errands.periodic.store import build_job, make_periodic, ms
from errands.serialization import JSONSerializer
from errands.store.keys import Keys
from tests.periodic.support import pool, queued_args
from tests.support.dashboard import http

pytestmark = pytest.mark.usefixtures("invariants")

# not a fire time in ms: a float, an empty field, past the year 9999 (or past what an int64
# holds), negative, leading zeros or spaces, not even UTF-8
BAD = [b"abc", b"1.5e3", b"", b"99999999999999999999", b"253402300800000", b"-5", b"007", b" 5"]
BAD.append(b"\xff")


def two(redis: Redis, namespace: str, clock: FakeClock) -> Any:
    code = [make_periodic("@every 1m", "tick", {"n": n}, name=n) for n in ("good", "bad")]
    return pool(redis, namespace, clock, code, "p1")


def errors(caplog: Any) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]


@pytest.mark.parametrize("bad", BAD)
async def test_a_corrupt_last_stops_only_its_schedule_logged_once(
    redis: Redis, namespace: str, clock: FakeClock, client: Client, bad: bytes, caplog: Any
) -> None:
    """read_states did int(last): ValueError, and no schedule of the pool's tick fired (a
    negative or huge one fired in a loop or failed with a traceback)."""
    state = Keys(namespace).schedule_state("bad")
    e = two(redis, namespace, clock)
    await e.tick_once()  # both initialized
    await redis.hset(state, "last", bad)
    with caplog.at_level("ERROR", logger="errands.periodic"):
        for minute in range(1, 6):
            clock.advance(60)
            assert await e.tick_once() == 1
            assert await queued_args(redis, namespace) == [{"n": "good"}] * minute
    [line] = errors(caplog)  # once, not every tick
    assert "'bad'" in line and f"last = {bad.decode(errors='replace')!r}" in line
    assert "corrupt" in line
    assert await redis.hget(state, "last") == bad  # nothing written over it
    assert (await client.schedule("bad")).runs == 0

    # repaired (a fire time written back): it fires again from there, once per slot
    await redis.hset(state, "last", ms(clock.now() - 60))
    caplog.clear()
    clock.advance(60)
    assert await e.tick_once() == 2
    assert (await client.schedule("bad")).runs == 1 and errors(caplog) == []
    # corrupt again: news, logged again
    await redis.hset(state, "last", bad)
    with caplog.at_level("ERROR", logger="errands.periodic"):
        clock.advance(60)
        assert await e.tick_once() == 1
    assert len(errors(caplog)) == 1


@pytest.mark.parametrize("field", ["runs", "skipped", "misfires"])
async def test_a_corrupt_counter_stops_only_its_schedule_logged_once(
    redis: Redis, namespace: str, clock: FakeClock, field: str, caplog: Any
) -> None:
    """A counter schedule_fire.lua would HINCRBY (and refuses, below): the pool reads it as a
    corrupt state, with the same one clear line (HINCRBY raised after the job was stored)."""
    e = two(redis, namespace, clock)
    await e.tick_once()
    await redis.hset(Keys(namespace).schedule_state("bad"), field, "1.5")
    with caplog.at_level("ERROR", logger="errands.periodic"):
        for minute in range(1, 4):
            clock.advance(60)
            assert await e.tick_once() == 1
            assert await queued_args(redis, namespace) == [{"n": "good"}] * minute
    [line] = errors(caplog)
    assert "'bad'" in line and f"{field} = '1.5'" in line and "corrupt" in line


async def test_a_corrupt_schedule_deleted_starts_again_from_now(
    redis: Redis, namespace: str, clock: FakeClock, client: Client
) -> None:
    """The way out docs/periodic.md gives: delete_schedule; the pool registers its code
    schedule again and it starts afresh (its next fire time, not a burst)."""
    e = two(redis, namespace, clock)
    await e.tick_once()
    await redis.hset(Keys(namespace).schedule_state("bad"), "last", "oops")
    clock.advance(60)
    assert await e.tick_once() == 1
    assert await client.delete_schedule("bad")
    await e.tick_once()  # registered again, initialized from now
    clock.advance(60)
    assert await e.tick_once() == 2
    assert not (await client.schedule("bad")).corrupt


async def _fire(e: Any, mode: str, slot: float, now: float) -> tuple[str, str]:
    periodic = e.code["bad"]
    job = build_job(periodic, now, fire_time=slot)
    return await e.store.fire(  # type: ignore[no-any-return]
        periodic,
        mode,
        slot_ms=ms(slot),
        next_ms=ms(slot + 60),
        now_ms=ms(now),
        envelope=JSONSerializer().dumps(job.envelope()),
        job_id=job.id,
        pool_id="p1",
    )


@pytest.mark.parametrize("mode", ["init", "fire", "missed", "advance"])
@pytest.mark.parametrize("bad", ["abc", "1.5e3", "", "-5", "253402300800000"])
async def test_schedule_fire_refuses_a_corrupt_last_before_writing(
    redis: Redis, namespace: str, clock: FakeClock, mode: str, bad: str
) -> None:
    """tonumber('abc') is nil: the script raised a Lua error (comparing nil); '1.5e3' and '-5'
    were read as numbers and fired (the pool's next read failed again)."""
    keys = Keys(namespace)
    e = two(redis, namespace, clock)
    await e.tick_once()
    await redis.hset(keys.schedule_state("bad"), "last", bad)
    before = await redis.hgetall(keys.schedule_state("bad"))
    clock.advance(60)
    with pytest.raises(ResponseError, match=f"field last holds {bad}, not a fire time in ms"):
        await _fire(e, mode, clock.now(), clock.now())
    assert await redis.hgetall(keys.schedule_state("bad")) == before
    assert await redis.hlen(keys.jobs) == 0


@pytest.mark.parametrize("field", ["runs", "skipped", "misfires"])
@pytest.mark.parametrize("mode", ["fire", "missed", "manual"])
async def test_schedule_fire_refuses_a_corrupt_counter_before_writing(
    redis: Redis, namespace: str, clock: FakeClock, field: str, mode: str
) -> None:
    """HINCRBY of a counter that is no integer raised after the job was stored and `last`
    moved on (a half-done fire). Any corrupt counter fails the call in any mode (one rule:
    a corrupt state is refused), also where this call would not count on it."""
    keys = Keys(namespace)
    e = two(redis, namespace, clock)
    await e.tick_once()
    await redis.hset(keys.schedule_state("bad"), field, "1.5")
    before = await redis.hgetall(keys.schedule_state("bad"))
    clock.advance(60)
    with pytest.raises(ResponseError, match=f"field {field} holds 1.5, not a counter"):
        await _fire(e, mode, clock.now(), clock.now())
    assert await redis.hgetall(keys.schedule_state("bad")) == before
    assert await redis.hlen(keys.jobs) == 0


async def test_a_manual_run_leaves_a_corrupt_last_alone(
    redis: Redis, namespace: str, clock: FakeClock, client: Client
) -> None:
    """A manual run does not read `last`: it runs (the operator's 'run now' still works)."""
    e = two(redis, namespace, clock)
    await e.tick_once()
    await redis.hset(Keys(namespace).schedule_state("bad"), "last", "abc")
    job_id = await client.run_schedule_now("bad")
    assert await queued_args(redis, namespace) == [{"n": "bad"}]
    info = await client.schedule("bad")
    assert info.last_job_id == job_id and info.runs == 1
    assert info.corrupt and info.raw == {"last": "abc"}


@pytest.mark.parametrize(
    ("field", "bad"), [("last", "abc"), ("next", "1.5e3"), ("prev", ""), ("runs", "x")]
)
async def test_listing_shows_a_corrupt_state(
    redis: Redis,
    namespace: str,
    clock: FakeClock,
    client: Client,
    field: str,
    bad: str,
) -> None:
    """Client.schedules(): int('1.5e3') of `next` raised, so no schedule was listed (and a
    corrupt `last` was listed as healthy); the dashboard the same. A bad `prev` or `next`
    alone is listed in `raw` but not corrupt: pools do not read them, it fires (it was
    listed corrupt, 'corrupt' in the CLI's ON column and the dashboard's Next cell)."""
    e = two(redis, namespace, clock)
    await e.tick_once()
    clock.advance(60)
    assert await e.tick_once() == 2
    await redis.hset(Keys(namespace).schedule_state("bad"), field, bad)
    good, listed = sorted(await client.schedules(), key=lambda i: i.name != "good")
    assert (good.name, good.corrupt, good.raw, good.runs) == ("good", False, None, 1)
    corrupt = field in ("last", "runs")
    assert (listed.name, listed.corrupt, listed.raw) == ("bad", corrupt, {field: bad})
    if field in ("next", "prev"):
        assert getattr(listed, f"{field}_fire") is None
    if field == "runs":
        assert listed.runs == 0

    async with http(errands.dashboard(client)) as web:
        page = await web.get("/schedules")
    assert page.status_code == 200
    assert page.text.count(">corrupt</span>") == corrupt and 'data-schedule="good"' in page.text
    clock.advance(60)
    assert await e.tick_once() == (1 if corrupt else 2)
    if not corrupt:  # (its fire rewrote prev and next)
        assert (await client.schedule("bad")).raw is None


@pytest.mark.parametrize("sign", [1, -1])
@pytest.mark.parametrize(
    ("value", "counter"), [(2**53, True), (2**53 + 1, True), (2**53 + 2, False)]
)
async def test_a_counter_past_2_53_has_one_verdict_in_python_and_lua(
    redis: Redis,
    namespace: str,
    clock: FakeClock,
    client: Client,
    sign: int,
    value: int,
    counter: bool,
) -> None:
    """Lua reads a counter with tonumber(), which rounds 2^53+1 to 2^53 (accepted: a manual
    run or another path fired it), where the pool and the listing called it corrupt."""
    keys = Keys(namespace)
    e = two(redis, namespace, clock)
    await e.tick_once()
    await redis.hset(keys.schedule_state("bad"), "runs", sign * value)
    assert (await client.schedule("bad")).corrupt is not counter
    clock.advance(60)
    assert await e.tick_once() == (2 if counter else 1)  # the pool's verdict
    await redis.hset(keys.schedule_state("bad"), "runs", sign * value)  # (as before the fire)
    clock.advance(60)
    if counter:  # the script's
        assert (await _fire(e, "fire", clock.now(), clock.now()))[0] == "fired"
    else:
        with pytest.raises(ResponseError, match=f"field runs holds {sign * value}, not a counter"):
            await _fire(e, "fire", clock.now(), clock.now())


async def test_what_was_logged_of_a_runtime_schedule_goes_with_its_definition(
    redis: Redis, namespace: str, clock: FakeClock, client: Client, caplog: Any
) -> None:
    """Only a `failed` entry was dropped when a runtime definition changed or went: a runtime
    schedule deleted while corrupt (or ahead, or in the future) kept its entry in the pool's
    "logged once" set for the pool's life, and a new definition's corrupt state went unlogged."""
    state = Keys(namespace).schedule_state("rt")
    e = pool(redis, namespace, clock, [], "p1")
    await client.add_schedule("rt", "tick", "@every 1m")
    await e.tick_once()  # initialized
    await redis.hset(state, "last", "abc")
    with caplog.at_level("ERROR", logger="errands.periodic"):
        for spec in ("@every 1m", "@every 1m", "@every 2m", "@every 2m"):
            await client.add_schedule("rt", "tick", spec)
            clock.advance(120)
            assert await e.tick_once() == 0
    assert len([line for line in errors(caplog) if "'rt'" in line]) == 2  # (once a definition)
    assert e._logged == {("corrupt", "rt")}
    assert await client.delete_schedule("rt")
    await e.tick_once()
    assert e._logged == set()


async def test_a_corrupt_state_is_listed_short_whatever_its_size_and_field_names(
    redis: Redis, namespace: str, clock: FakeClock, client: Client, caplog: Any
) -> None:
    """`raw` carried a bad value whole (the listing, the JSON API, the CLI's --json, the
    dashboard's title), and a field name that is not UTF-8 raised UnicodeDecodeError for the
    whole listing."""
    e = two(redis, namespace, clock)
    await e.tick_once()
    state = Keys(namespace).schedule_state("bad")
    await redis.hset(state, mapping={"last": "9" * 40, b"\xff\xfe": "x", "runs": "y" * 100_000})
    good, bad = sorted(await client.schedules(), key=lambda i: i.name != "good")
    assert not good.corrupt and bad.corrupt
    assert bad.raw == {"last": "9" * 40, "runs": "y" * 40 + "…"}
    with caplog.at_level("ERROR", logger="errands.periodic"):
        clock.advance(60)
        assert await e.tick_once() == 1
    [line] = errors(caplog)
    assert f"last = {'9' * 40!r}, runs = {'y' * 40 + '…'!r}" in line
