"""A schedule_fire.lua or schedule_register.lua call whose reply is lost is sent again by
redis-py (the same KEYS and ARGV): the re-send must leave the same state and give the same
answer. And a call with a bad argument fails before its first write."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from errands import Client, Dedup, Enqueuer, FakeClock
from errands.periodic.enqueuer import PeriodicEnqueuer
from errands.periodic.store import ScheduleStore, make_periodic
from errands.serialization import JSONSerializer
from errands.store.keys import Keys
from tests.support.resend import Recorder, refused, snapshot

START = 1_767_225_600.0  # 2026-01-01T00:00:00Z


pytestmark = pytest.mark.usefixtures("invariants")


def recorded(store: ScheduleStore) -> Recorder:
    rec = Recorder(store._fire)
    store._fire = rec  # type: ignore[assignment]
    return rec


@pytest.mark.parametrize("meanwhile", ["queued", "running", "finished"])
async def test_a_resent_manual_run_enqueues_and_counts_nothing(
    redis: Redis, namespace: str, client: Client, meanwhile: str
) -> None:
    """The re-send queued the job id again (a job that had started or ended ran a second time)
    and counted the run twice."""
    keys = Keys(namespace)
    await client.add_schedule("nightly", "tick", "0 3 * * *")
    fire = recorded(client._schedule_store)
    job_id = await client.run_schedule_now("nightly")
    if meanwhile != "queued":  # fetched (and finished: its envelope gone, its tombstone kept)
        assert await redis.zrem(keys.queue("tick"), job_id) == 1
    if meanwhile == "finished":
        await redis.hdel(keys.jobs, job_id)
        await redis.zadd(keys.ended, {job_id: START * 1000})
    before = await snapshot(redis, namespace)
    assert await fire.resend() == fire.reply == [b"fired", job_id.encode()]
    assert await snapshot(redis, namespace) == before
    assert (await client.schedule("nightly")).runs == 1
    await redis.delete(keys.queue("tick"), keys.jobs, keys.ended)


async def test_a_resent_deduplicated_manual_run_counts_one_skip(
    redis: Redis, namespace: str, client: Client
) -> None:
    d = Dedup("nightly")
    await client.add_schedule("nightly", "tick", "0 3 * * *", dedup=d)
    holder = await Enqueuer(redis, namespace=namespace).enqueue("tick", dedup=d)
    assert holder is not None
    fire = recorded(client._schedule_store)
    assert await client.run_schedule_now("nightly") == holder.id
    before = await snapshot(redis, namespace)
    assert await fire.resend() == fire.reply == [b"deduped", holder.id.encode()]
    assert await snapshot(redis, namespace) == before
    assert (await client.schedule("nightly")).skipped == 1


async def test_a_deduplicated_manual_run_resent_after_another_run_counts_one_skip(
    redis: Redis, namespace: str, client: Client
) -> None:
    """Another run of the schedule overwrote `answer` before the re-send: the re-sent manual run
    went through the admission again and counted `skipped` a second time, and once the holder
    ended it enqueued a run its first send had refused. Its answer is kept in its reply key."""
    keys = Keys(namespace)
    d = Dedup("nightly")
    await client.add_schedule("nightly", "tick", "0 3 * * *", dedup=d)
    holder = await Enqueuer(redis, namespace=namespace).enqueue("tick", dedup=d)
    assert holder is not None
    fire = recorded(client._schedule_store)
    assert await client.run_schedule_now("nightly") == holder.id
    assert await client.run_schedule_now("nightly") == holder.id  # another run: `answer` its
    assert (await client.schedule("nightly")).skipped == 2
    first = [b"deduped", holder.id.encode()]
    before = await snapshot(redis, namespace)
    assert await fire.resend(0) == fire.calls[0][2] == first
    assert await snapshot(redis, namespace) == before
    await redis.hdel(keys.jobs, holder.id)  # the holder ended (its key held no more)
    before = await snapshot(redis, namespace)
    assert await fire.resend(0) == first
    assert await snapshot(redis, namespace) == before
    assert (await client.schedule("nightly")).skipped == 2
    await redis.delete(keys.queue("tick"), keys.dedup, keys.dedup_of_job)


async def test_a_deduplicated_manual_run_resent_after_the_schedule_was_deleted_answers_deduped(
    redis: Redis, namespace: str, client: Client
) -> None:
    """delete_schedule drops the state (its `answer` too) and stores no job for a deduplicated
    run: only the run's reply key (reply:<job id>, which delete_schedule leaves) answers its
    re-send as the first; else it is answered gone (run_schedule_now: ScheduleNotFoundError)."""
    keys = Keys(namespace)
    d = Dedup("nightly")
    await client.add_schedule("nightly", "tick", "0 3 * * *", dedup=d)
    holder = await Enqueuer(redis, namespace=namespace).enqueue("tick", dedup=d)
    assert holder is not None
    fire = recorded(client._schedule_store)
    assert await client.run_schedule_now("nightly") == holder.id
    assert await client.delete_schedule("nightly") is True
    before = await snapshot(redis, namespace)
    assert await fire.resend() == fire.reply == [b"deduped", holder.id.encode()]
    assert await snapshot(redis, namespace) == before
    await redis.delete(keys.queue("tick"), keys.jobs, keys.dedup, keys.dedup_of_job)


async def test_a_manual_run_whose_reply_key_holds_no_answer_writes_nothing(
    redis: Redis, namespace: str, client: Client
) -> None:
    await client.add_schedule("nightly", "tick", "0 3 * * *")
    fire = recorded(client._schedule_store)
    job_id = await client.run_schedule_now("nightly")
    await redis.set(Keys(namespace).reply(job_id), "x")
    await refused(redis, namespace, fire.resend(), "holds no answer of this script")
    await redis.delete(Keys(namespace).queue("tick"), Keys(namespace).jobs)
    await redis.delete(Keys(namespace).reply(job_id))


async def test_a_manual_run_resent_after_the_schedule_was_deleted_answers_fired(
    redis: Redis, namespace: str, client: Client
) -> None:
    """The re-send looked the definition up first and answered gone: run_schedule_now raised
    ScheduleNotFoundError ("nothing enqueued") while the first send's job was queued."""
    keys = Keys(namespace)
    await client.add_schedule("nightly", "tick", "0 3 * * *")
    fire = recorded(client._schedule_store)
    job_id = await client.run_schedule_now("nightly")
    assert await client.delete_schedule("nightly") is True
    before = await snapshot(redis, namespace)
    assert await fire.resend() == fire.reply == [b"fired", job_id.encode()]
    assert await snapshot(redis, namespace) == before
    assert await redis.zscore(keys.queue("tick"), job_id) is not None
    await redis.delete(keys.queue("tick"), keys.jobs)


async def test_a_fire_resent_after_its_definition_was_dropped_answers_fired(
    redis: Redis, namespace: str, clock: FakeClock
) -> None:
    """A code schedule no pool registers any more is dropped (drop_code: its state kept): the
    re-send of its last fire looked the definition up before the state's answer and said gone
    (the pool did not count the run its first send enqueued)."""
    periodic = make_periodic("@every 1m", "tick")
    e = PeriodicEnqueuer(redis, Keys(namespace), clock, JSONSerializer(), [periodic], pool_id="p1")
    fire = recorded(e.store)
    await e.tick_once()  # the schedule starts from now
    clock.advance(60)
    assert await e.tick_once() == 1
    assert fire.reply[0] == b"fired"
    await e.store.drop_code(periodic.name)
    before = await snapshot(redis, namespace)
    assert await fire.resend() == fire.reply
    assert await snapshot(redis, namespace) == before
    await redis.delete(Keys(namespace).queue("tick"), Keys(namespace).jobs)


@pytest.mark.parametrize("skip_if_running", [False, True], ids=["fired", "skipped"])
async def test_a_resent_fire_gives_the_same_answer(
    redis: Redis, namespace: str, clock: FakeClock, skip_if_running: bool
) -> None:
    """A re-sent fire found its own slot handled and answered stale: the pool did not count
    its run (or its skip)."""
    periodic = make_periodic("@every 1m", "tick", skip_if_running=skip_if_running)
    e = PeriodicEnqueuer(redis, Keys(namespace), clock, JSONSerializer(), [periodic], pool_id="p1")
    fire = recorded(e.store)
    await e.tick_once()  # the schedule starts from now
    clock.advance(60)
    assert await e.tick_once() == 1
    clock.advance(60)
    assert await e.tick_once() == int(not skip_if_running)
    status = b"skipped" if skip_if_running else b"fired"
    assert fire.reply[0] == status
    before = await snapshot(redis, namespace)
    assert await fire.resend() == fire.reply
    assert await snapshot(redis, namespace) == before
    await redis.delete(Keys(namespace).queue("tick"), Keys(namespace).jobs)


@pytest.mark.parametrize(
    ("bad", "value"),
    [("priority", "high"), ("window", 0), ("window", 1.5), ("window", 10**17), ("window", "007")],
)
async def test_a_fire_with_a_bad_argument_writes_nothing(
    redis: Redis, namespace: str, client: Client, bad: str, value: object
) -> None:
    """A priority that is not a number failed after the job was stored (an envelope on no
    queue); a throttle window of 0 (or a fraction of a ms) failed after the job was queued (no
    window taken), and so did one of 10^17 ms (is_whole took it; Lua handed it to SET PX as
    '1e+17'). The window is an integer Redis reads, 1..MAX_MS."""
    await client.add_schedule("nightly", "tick", "0 3 * * *", dedup=Dedup("n", throttle=60))
    fire = recorded(client._schedule_store)
    await client.run_schedule_now("nightly")
    keys, args, _reply = fire.calls[-1]
    await redis.delete(Keys(namespace).dedup_window("tick:n"))  # the window has passed
    before = await snapshot(redis, namespace)
    args = list(args)
    args[6] = "other-id"
    args[8 if bad == "priority" else 15] = value
    with pytest.raises(ResponseError, match=bad):
        await fire.script(keys=keys, args=args)
    assert await snapshot(redis, namespace) == before


@pytest.mark.parametrize("registered", ["new", "same"])
async def test_a_resent_registration_gives_the_same_answer(
    redis: Redis, namespace: str, registered: str
) -> None:
    """A re-sent registration found its definitions written (by its own first send) and
    reported none new: the pool did not look at the state of a schedule new or reset by a
    Client until its next fire time."""
    store = ScheduleStore(redis, Keys(namespace))
    rec = Recorder(store._register)
    store._register = rec  # type: ignore[assignment]
    periodic = make_periodic("@every 1m", "tick")
    if registered == "same":
        await store.refresh([periodic], 1_000, 60_000)
    added, _runtime, conflicts = await store.refresh([periodic], 2_000, 60_000)
    assert (added, conflicts) == (int(registered == "new"), {})
    before = await snapshot(redis, namespace)
    assert await rec.resend() == rec.reply
    assert await snapshot(redis, namespace) == before


async def test_a_run_meeting_a_queue_of_another_type_writes_nothing(
    redis: Redis, namespace: str, client: Client
) -> None:
    """schedule_fire.lua stored the envelope, then failed to queue the job: an orphaned
    envelope (and, with skip_if_running, a 'previous run' that never ends)."""
    keys = Keys(namespace)
    await client.add_schedule("nightly", "tick", "0 3 * * *")
    await redis.set(keys.queue("tick"), "x")
    before = await snapshot(redis, namespace)
    with pytest.raises(ResponseError, match=f"WRONGTYPE {keys.prefix}.* no job was stored"):
        await client.run_schedule_now("nightly")
    assert await snapshot(redis, namespace) == before
    await redis.delete(keys.queue("tick"))


async def test_a_registration_with_a_name_but_no_definition_writes_nothing(
    redis: Redis, namespace: str
) -> None:
    """A name without its definition (ARGV one short) failed after the names before it were
    registered."""
    keys = Keys(namespace)
    store = ScheduleStore(redis, keys)
    args = [2_000, 60_000, "tick", make_periodic("@every 1m", "tick").to_json(), "tock"]
    with pytest.raises(ResponseError, match="errands: schedule_register: "):
        await store._register(keys=[keys.code_schedules, keys.code_schedules_live], args=args)
    assert await snapshot(redis, namespace) == {}


@pytest.mark.parametrize(("now", "live"), [("nan", "60000"), ("2000", "nan"), ("inf", "-inf")])
async def test_a_registration_at_a_time_that_is_no_integer_writes_nothing(
    redis: Redis, namespace: str, now: str, live: str
) -> None:
    """tonumber() took 'nan' (and 'inf' with '-inf': nan again): the new definition was
    stored, then ZADD refused its live-until score (nan), after the first write."""
    keys = Keys(namespace)
    store = ScheduleStore(redis, keys)
    args = [now, live, "tick", make_periodic("@every 1m", "tick").to_json()]
    with pytest.raises(ResponseError, match="errands: schedule_register: "):
        await store._register(keys=[keys.code_schedules, keys.code_schedules_live], args=args)
    assert await snapshot(redis, namespace) == {}


@pytest.mark.parametrize(
    ("source", "meanwhile"),
    [("runtime", "deleted"), ("runtime", "added_again"), ("code", "registered_again")],
)
async def test_a_fire_resent_after_delete_schedule_answers_fired_and_enqueues_nothing(
    redis: Redis, namespace: str, clock: FakeClock, client: Client, source: str, meanwhile: str
) -> None:
    """delete_schedule drops the state (its `answer` too): the re-send of a scheduled fire
    answered gone (the pool did not count the run its first send enqueued), and once the
    schedule was defined again (add_schedule, or a pool's code registering it) it found no
    `last` and enqueued its slot a second time (the job id again: one that ended ran twice)."""
    keys = Keys(namespace)
    code = [make_periodic("@every 1m", "tick", name="nightly")] if source == "code" else []
    if source == "runtime":
        await client.add_schedule("nightly", "tick", "@every 1m")
    e = PeriodicEnqueuer(redis, keys, clock, JSONSerializer(), code, pool_id="p1")
    fire = recorded(e.store)
    await e.tick_once()  # the schedule starts from now
    clock.advance(60)
    assert await e.tick_once() == 1
    job_id = fire.reply[1]
    assert fire.reply[0] == b"fired"
    assert await redis.zrem(keys.queue("tick"), job_id) == 1  # it ran and ended
    await redis.hdel(keys.jobs, job_id)
    await redis.zadd(keys.ended, {job_id: (START + 70) * 1000})
    assert await client.delete_schedule("nightly") is True
    if meanwhile == "added_again":
        await client.add_schedule("nightly", "tick", "@every 1m")
    elif meanwhile == "registered_again":
        await e.refresh()
    before = await snapshot(redis, namespace)
    assert await fire.resend() == fire.reply
    assert await snapshot(redis, namespace) == before
    await redis.delete(keys.ended)


@pytest.mark.parametrize("trace", ["stored", "result_record"])
async def test_a_fire_resent_after_its_schedule_is_added_again_is_known_by_its_job(
    redis: Redis, namespace: str, clock: FakeClock, client: Client, trace: str
) -> None:
    """docs/periodic.md: a fire re-sent after delete_schedule is recognised by its job stored
    (still queued), or by its result record (its tombstone: the test above)."""
    keys = Keys(namespace)
    await client.add_schedule("nightly", "tick", "@every 1m")
    e = PeriodicEnqueuer(redis, keys, clock, JSONSerializer(), [], pool_id="p1")
    fire = recorded(e.store)
    await e.tick_once()
    clock.advance(60)
    assert await e.tick_once() == 1
    job_id = fire.reply[1].decode()
    if trace == "result_record":  # it ran and ended: only its result record is left
        await redis.zrem(keys.queue("tick"), job_id)
        await redis.hdel(keys.jobs, job_id)
        await redis.set(keys.done(job_id), b"{}", px=60_000)
    assert await client.delete_schedule("nightly") is True
    await client.add_schedule("nightly", "tick", "@every 1m")
    before = await snapshot(redis, namespace)
    assert await fire.resend() == fire.reply
    assert await snapshot(redis, namespace) == before


async def test_a_fire_answered_skipped_resent_after_its_schedule_is_added_again_runs_nothing(
    redis: Redis, namespace: str, clock: FakeClock, client: Client
) -> None:
    """A fire whose first send stored no job (skipped: the previous run unfinished) is not
    recognised by a job id: re-sent after delete_schedule and add_schedule (no pool had started
    the new state yet), it found no `last` and no previous run and enqueued the skipped slot, a
    time before the schedule was added again (which starts from now). A state with no `last`
    was deleted since its pool read it: the call is stale, nothing written."""
    await client.add_schedule("nightly", "tick", "@every 1m", skip_if_running=True)
    e = PeriodicEnqueuer(redis, Keys(namespace), clock, JSONSerializer(), [], pool_id="p1")
    fire = recorded(e.store)
    await e.tick_once()
    clock.advance(60)
    assert await e.tick_once() == 1  # its job is still queued
    clock.advance(60)
    assert await e.tick_once() == 0
    assert fire.reply[0] == b"skipped"
    assert await client.delete_schedule("nightly") is True
    await client.add_schedule("nightly", "tick", "@every 1m", skip_if_running=True)
    before = await snapshot(redis, namespace)
    assert (await fire.resend())[0] == b"stale"
    assert await snapshot(redis, namespace) == before
