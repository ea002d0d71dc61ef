"""Bad arguments, and a seq that is not a counter, refused before a script's first write (found
by review): each call fails with a clear error and leaves every key of the namespace as it was."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import pytest
from redis.asyncio import Redis

from errands import Dedup, Enqueuer
from errands.periodic.store import ScheduleStore, make_periodic
from errands.store.keys import Keys
from errands.store.scripts import Acked, Scripts, Settle
from errands.workflows.store import Member, WorkflowScripts, run_keys
from tests.support.deadpool import dead_pool_row
from tests.support.resend import refused, snapshot

SPEC = b'{"n":"job","f":"fail","p":0,"d":[]}'


class Captured(Exception):
    pass


async def request(scripts: Scripts, call: Awaitable[Any]) -> tuple[list[Any], list[Any]]:
    """The KEYS and ARGV a Scripts method would send (nothing is sent)."""
    seen: list[tuple[list[Any], list[Any]]] = []

    async def capture(name: str, keys: Any, args: Any) -> Any:
        seen.append((list(keys), list(args)))
        raise Captured

    scripts._call = capture  # type: ignore[method-assign]
    try:
        with pytest.raises(Captured):
            await call
    finally:
        del scripts._call
    return seen[0]


async def running_job(redis: Redis, keys: Keys, scripts: Scripts) -> Acked:
    """A job fetched by pool p1, as its ack would name it."""
    job = await Enqueuer(redis, namespace=keys.namespace).enqueue("work", {"n": 1})
    assert job is not None
    await scripts.heartbeat("p1", b"{}", 60_000, mode="register")
    fetched = await scripts.fetch("p1", 0, 10, [("work", 0)])
    assert fetched is not None and len(fetched) == 1
    return Acked(job.id, "work", b"1", 1_000, 60_000, 1, fetched[0].token)


# ARGV[8] extras, ARGV[9..10] the name and its TTL, ARGV[11..16] the job: id, name index,
# result, started, attempt, token (ack.lua's header)
@pytest.mark.parametrize(
    ("at", "value"),
    [(6, "2"), (6, "0.5"), (11 + 1, "2"), (11 + 1, "0"), (11 + 3, "soon"), (10, "x"),
     (10, "1.5"), (10, "-1"), (11 + 4, "first"), (4, "nan"), (4, " 5"), (4, "007"),
     (10, "1" + "0" * 20), (10, "1" + "0" * 17), (10, "0100"), (11 + 3, "0x10"),
     (11 + 4, "-0"), (8, "1"), (8, "-1"), (8, "0.5"), (8, "x")],
    ids=["count-over", "count-fraction", "name-index-over", "name-index-0", "started", "ttl",
         "ttl-fraction", "ttl-negative", "attempt", "now-nan", "now-space", "now-zeros",
         "ttl-1e20", "ttl-1e17", "ttl-zeros", "started-hex", "attempt-minus-0", "extras-over",
         "extras-negative", "extras-fraction", "extras-nan"],
)  # fmt: skip
async def test_an_ack_with_a_bad_number_acknowledges_nothing(
    redis: Redis, namespace: str, at: int, value: str
) -> None:
    """A TTL, count or name index that did not fit raised half-way (the attempt record of the
    job already dropped) or wrote the job's history into another key; a start or attempt that
    was not a number was written into the records as broken JSON. A time ' 5' passed tonumber()
    and raised in the history's ZADD after the first write; a TTL of 10^17 or more raised in SET
    PX (Lua hands it over as '1e+17'); a start '0x10' was written into the record as such, and
    a TTL '0100' or attempt '-0' taken (Redis reads neither as an integer)."""
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    acked = await running_job(redis, keys, scripts)
    call, args = await request(scripts, scripts.ack("p1", [acked], False, 5_000, True))
    args[at - 1] = value
    await refused(redis, namespace, scripts._s["ack"](keys=call, args=args), "errands: ack: ")


async def test_a_history_trim_counting_more_members_than_given_trims_nothing(
    redis: Redis, namespace: str
) -> None:
    """The record of the first member was moved into its result record, then the missing
    second member raised."""
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    acked = await running_job(redis, keys, scripts)
    assert await scripts.ack("p1", [acked], False, 5_000, True) == []
    assert await redis.get(keys.done(acked.id)) == b"1"  # the record names the attempt
    member = f"{acked.id}:1"
    call, args = await request(scripts, scripts.trim_history(["work"], [member]))
    args[0] = 2
    trim = scripts._s["trim_history"](keys=call, args=args)
    await refused(redis, namespace, trim, "errands: trim_history: ")


@pytest.mark.parametrize(
    ("priority", "now"),
    [(1001, 5), (-1001, 5), ("inf", 5), (2, "nan"), (2, 1.5)],
    ids=["priority-over", "priority-under", "priority-inf", "now-nan", "now-fraction"],
)
async def test_an_update_with_a_bad_number_changes_nothing(
    redis: Redis, namespace: str, priority: Any, now: Any
) -> None:
    """A time 'nan' raised in the history's ZADD after the envelope was replaced; a priority
    out of -1000..1000 (or inf) was stored, its queue score past what a double holds exactly."""
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    job = await Enqueuer(redis, namespace=namespace).enqueue("sync", {"n": 1})
    assert job is not None
    old = await redis.hget(keys.jobs, job.id)
    assert old is not None
    update = scripts.update_job(
        job.id, "sync", keys.queue("sync"), old, b'{"n":2}', priority, 1, b"{}", now
    )
    await refused(redis, namespace, update, "errands: update_job: ")


def not_a_counter(keys: Keys) -> str:
    return f"errands: {keys.seq} holds x, not a counter"


async def test_a_promote_with_seq_not_a_counter_moves_nothing(redis: Redis, namespace: str) -> None:
    """The due job was taken out of its scheduled set, then INCR seq raised: the job was in no
    set any more."""
    keys = Keys(namespace)
    assert await Enqueuer(redis, namespace=namespace).enqueue("work", delay=1) is not None
    await redis.set(keys.seq, "x")
    later = (int((await redis.time())[0]) + 60) * 1000
    promote = Scripts(redis, keys).promote(["work"], later, 100)
    await refused(redis, namespace, promote, f"ERR .*{keys.seq}|value is not an integer")


@pytest.mark.parametrize("how", ["unique", "dedup", "dedup-debounce"])
async def test_an_enqueue_with_seq_not_a_counter_stores_nothing(
    redis: Redis, namespace: str, how: str
) -> None:
    """The envelope was stored (and the unique lock or dedup key taken), then INCR seq raised:
    an orphaned envelope held the lock, and no job ran."""
    keys = Keys(namespace)
    enqueuer = Enqueuer(redis, namespace=namespace)
    if how == "dedup-debounce":  # a waiting holder, queued anew by the next enqueue
        assert await enqueuer.enqueue("work", {"v": 0}, dedup=Dedup("k", debounce=True)) is not None
    await redis.set(keys.seq, "x")
    if how == "unique":
        call: Awaitable[Any] = enqueuer.enqueue_unique("work", {"v": 1})
    else:
        mode = Dedup("k", debounce=True) if how == "dedup-debounce" else Dedup("k")
        call = enqueuer.enqueue("work", {"v": 1}, dedup=mode)
    await refused(redis, namespace, call, not_a_counter(keys))


def member(priority: Any) -> Member:
    return Member("a", "job", True, priority, b"{}", SPEC)


@pytest.mark.parametrize(
    ("priority", "linger"),
    [("nan", 0), ("inf", 0), (1.5, 0), (1001, 0), (0, "nan"), (0, "inf"), (0, 1.5), (0, -1),
     (0, "0100"), (0, "-0")],
    ids=["priority-nan", "priority-inf", "priority-fraction", "priority-over", "linger-nan",
         "linger-inf", "linger-fraction", "linger-negative", "linger-zeros", "linger-minus-0"],
)  # fmt: skip
async def test_a_workflow_with_a_bad_number_is_not_stored(
    redis: Redis, namespace: str, priority: Any, linger: Any
) -> None:
    """A priority 'nan' raised in the queue's ZADD after the run was half stored; 'inf', a
    fraction or a priority out of range was stored as the job's priority; a linger that is not
    whole was stored, for every later trim to trip over; '0100' was stored, for wf_finish's
    PEXPIRE to raise after its DEL when the run ended."""
    wf = WorkflowScripts(redis, Keys(namespace))
    store = wf.enqueue("r1", "flow", linger, [member(priority)], [], [])
    await refused(redis, namespace, store, "errands: wf_enqueue: ")


async def test_a_workflow_counting_fractions_of_members_is_not_stored(
    redis: Redis, namespace: str
) -> None:
    """Counts of 0.5 members and 1.5 edges fitted the arguments given (6 of them): an edge was
    stored, no member, and a run of size 0.5 that never finished."""
    wf = WorkflowScripts(redis, Keys(namespace))
    keys = Keys(namespace)
    call = [keys.jobs, keys.priorities, keys.seq, keys.names, keys.idle, keys.workflow_of]
    call += [*run_keys(keys, "r1"), keys.ended]
    args = ["r1", "flow", 0, 0.5, 1.5, 0, "a", "b", "c", "d", "e", "f"]
    store = wf._s["wf_enqueue"](keys=call, args=args)
    await refused(redis, namespace, store, "errands: wf_enqueue: ")


async def test_a_workflow_with_seq_not_a_counter_is_not_stored(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    await redis.set(keys.seq, "x")
    store = WorkflowScripts(redis, keys).enqueue("r1", "flow", 0, [member(0)], [], [])
    await refused(redis, namespace, store, not_a_counter(keys))


@pytest.mark.parametrize("priority", ["nan", "inf", 1.5, 1001, "seq"])
async def test_a_member_added_with_a_bad_number_is_not_added(
    redis: Redis, namespace: str, priority: Any
) -> None:
    """A priority 'nan' raised in the queue's ZADD after the node was added to the run (open,
    nodes, size): a member that never ran, and a run that never finished."""
    keys = Keys(namespace)
    wf = WorkflowScripts(redis, keys)
    assert await wf.enqueue("r1", "flow", 0, [member(0)], [], [])
    if priority == "seq":
        await redis.set(keys.seq, "x")
    new = Member("b", "job", True, 0 if priority == "seq" else priority, b"{}", SPEC)
    match = not_a_counter(keys) if priority == "seq" else "errands: wf_add: "
    await refused(redis, namespace, wf.add("r1", new, [], []), match)


async def test_a_schedule_firing_with_seq_not_a_counter_changes_nothing(
    redis: Redis, namespace: str
) -> None:
    """The schedule's state moved on to the next slot, then INCR seq raised: the slot was
    counted as fired and its job never stored."""
    keys = Keys(namespace)
    store = ScheduleStore(redis, keys)
    periodic = make_periodic("@every 1m", "report")
    now = 1_767_225_600_000
    await store.refresh([periodic], now, 60_000)
    await store.fire(periodic, "init", slot_ms=now, next_ms=now + 60_000, now_ms=now)
    await redis.set(keys.seq, "x")
    fire = store.fire(
        periodic, "fire", slot_ms=now + 60_000, next_ms=now + 120_000, now_ms=now + 60_000,
        envelope=b'{"n":"report"}', job_id="j1", pool_id="p1",
    )  # fmt: skip
    await refused(redis, namespace, fire, not_a_counter(keys))


async def test_an_ack_releasing_a_workflow_member_with_seq_not_a_counter_changes_nothing(
    redis: Redis, namespace: str
) -> None:
    """The member's ack was written (attempt, in-progress entry, record), then releasing its
    dependent raised at INCR seq: the dependent never ran, the run never finished."""
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    wf = WorkflowScripts(redis, keys)
    first = Member("a", "work", True, 0, b"{}", b'{"n":"work","f":"fail","p":0,"d":[]}')
    then = Member("b", "work", False, 0, b"{}", b'{"n":"work","f":"fail","p":0,"d":["a"]}')
    assert await wf.enqueue("r1", "flow", 0, [first, then], [("a", "b")], [])
    await scripts.heartbeat("p1", b"{}", 60_000, mode="register")
    fetched = await scripts.fetch("p1", 0, 10, [("work", 0)])
    assert fetched is not None and [f.id for f in fetched] == ["r1.a"]
    await redis.set(keys.seq, "x")
    acked = Acked("r1.a", "work", b"1", 1_000, 60_000, 1, fetched[0].token)
    ack = scripts.ack("p1", [acked], False, 5_000, True)
    await refused(redis, namespace, ack, not_a_counter(keys))


async def test_a_reap_with_seq_not_a_counter_changes_nothing(redis: Redis, namespace: str) -> None:
    """The dead pool was retired and its job taken out of its in-progress set, then the
    requeue raised at INCR seq: the job was in no set any more."""
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    row = await dead_pool_row(redis, namespace, scripts)
    await redis.set(keys.seq, "x")
    reap = scripts.reap("dead", 60_000, 5, b'"lost"', b'"malformed"', [row])
    await refused(redis, namespace, reap, not_a_counter(keys))


@pytest.mark.parametrize(
    ("mode", "broken"),
    [("queue", "seq"), ("queue", "queue"), ("schedule", "scheduled"), ("delete", "history")],
)
async def test_a_move_with_a_key_it_touches_broken_moves_nothing(
    redis: Redis, namespace: str, mode: str, broken: str
) -> None:
    """The dead job was taken out of its set and the call's answer noted, then INCR seq (or
    the write to its queue, scheduled set or history) raised: the job was in no set, lost."""
    keys = Keys(namespace)
    await redis.hset(keys.jobs, "j1", b'{"id":"j1","n":"work","a":[]}')
    await redis.zadd(keys.dead, {"j1": 5})
    key = {"seq": keys.seq, "queue": keys.queue("work"), "scheduled": keys.scheduled("work"),
           "history": keys.history_of("work")}[broken]  # fmt: skip
    await redis.set(key, "x")
    move = Scripts(redis, keys).move("j1", "work", keys.dead, mode, due_ms=10**13, now_ms=10**12)
    await refused(redis, namespace, move, "nothing moved")


@pytest.mark.parametrize("broken", ["history_data", "stats", "running", "ended"])
async def test_an_ack_with_a_key_it_writes_broken_acknowledges_nothing(
    redis: Redis, namespace: str, broken: str
) -> None:
    """The attempt record and in-progress entry were dropped, then the write to history_data
    (or stats, ...) raised: the envelope stayed in `jobs`, in no set."""
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    acked = await running_job(redis, keys, scripts)
    key = {"history_data": keys.history_data, "stats": keys.stats, "running": keys.running,
           "ended": keys.ended}[broken]  # fmt: skip
    await redis.delete(key)
    await redis.set(key, "x")
    ack = scripts.ack("p1", [acked], False, 5_000, True)
    await refused(redis, namespace, ack, "nothing acknowledged")


async def test_an_ack_with_its_names_history_broken_leaves_the_job_alone(
    redis: Redis, namespace: str
) -> None:
    """The same raise at the write to the name's history; now the name's own key leaves its
    job alone as unfit, nothing written (tests/store/test_ack_name_keys.py: the other names'
    jobs are acknowledged)."""
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    acked = await running_job(redis, keys, scripts)
    await redis.set(keys.history_of("work"), "x")
    before = await snapshot(redis, namespace)
    report = await scripts.ack_report("p1", [acked], False, 5_000, True)
    assert (report.unfit, report.refused) == ([acked.id], [])
    assert await snapshot(redis, namespace) == before


@pytest.mark.parametrize("broken", ["history", "errors", "target", "stats"])
@pytest.mark.parametrize("many", [False, True])
async def test_a_settle_with_a_key_it_writes_broken_settles_nothing(
    redis: Redis, namespace: str, broken: str, many: bool
) -> None:
    """The attempt record and in-progress entry were dropped, then the write to the job's
    history (or errors, its retry set, stats) raised: the job was in no set."""
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    acked = await running_job(redis, keys, scripts)
    s = Settle(acked.id, "work", "retry", keys.retry("work"), 5_000, 1, token=acked.token)
    s.score_ms, s.error, s.counter = 6_000, b'{"error":"boom"}', "failed"
    key = {"history": keys.history_of("work"), "errors": keys.errors,
           "target": keys.retry("work"), "stats": keys.stats}[broken]  # fmt: skip
    await redis.delete(key)
    await redis.set(key, "x")
    call = scripts.settle_many("p1", [s]) if many else scripts.settle("p1", s)
    await refused(redis, namespace, call, "nothing settled")
