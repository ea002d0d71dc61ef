"""The integers the scripts take are spelt as Redis reads them (lib/types.lua's is_int: no space,
no leading zero, no '-0', no '0x10'): a number Redis refuses fails a call before its first write,
instead of raising in ZADD, SET PX, PEXPIRE or INCR after it."""

from __future__ import annotations

from importlib import resources

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from errands import Enqueuer
from errands.errors import RegistrationError
from errands.handlers import JobType
from errands.store.keys import Keys
from errands.store.scripts import Acked, Scripts, Settle
from errands.workflows.store import Member, WorkflowScripts
from tests.store.test_script_guards import a_chain
from tests.support.fetched import POOL, running_job
from tests.support.resend import refused

SPELLINGS = ["0", "5", "-12", "1" * 18, "1" * 19, "-0", "00", "007", "-007", "+5", " 5", "5 "]
SPELLINGS += ["", "-", "1e3", "0x10", "1.0", "9223372036854775808"]


@pytest.mark.parametrize("spelling", SPELLINGS)
async def test_is_int_takes_only_what_redis_reads_as_an_integer(
    redis: Redis, namespace: str, spelling: str
) -> None:
    """is_int took '007', '-0' and '00' (Redis refuses them): a counter, linger or TTL so spelt
    raised in INCR or PEXPIRE after a script's first write. It takes at most 18 characters (an
    INCR of it cannot overflow), fewer than Redis (20)."""
    types = resources.files("errands.store").joinpath("lua", "lib", "types.lua").read_text()
    script = types + "\nreturn is_int(ARGV[1]) and 1 or 0\n"
    taken = await redis.eval(script, 0, spelling) == 1  # type: ignore[misc]
    await redis.set(namespace, spelling)
    try:
        await redis.incrby(namespace, 0)
        redis_reads_it = True
    except ResponseError:
        redis_reads_it = False
    assert taken == (redis_reads_it and len(spelling) <= 18)


@pytest.mark.parametrize("now", [" 5", "007", "1e3", "-0"])
async def test_a_fetch_at_a_time_redis_does_not_read_fetches_nothing(
    redis: Redis, namespace: str, now: str
) -> None:
    """The time is the score of the in-progress entries: ' 5' passed tonumber() and raised in
    their ZADD after the job was taken (its attempt written, its unique lock gone)."""
    keys = Keys(namespace)
    assert await Enqueuer(redis, namespace=namespace).enqueue("work") is not None
    scripts = Scripts(redis, keys)
    await scripts.heartbeat(POOL, b"{}", 60_000, mode="register")
    fetch = scripts.fetch(POOL, now, 10, [("work", 0)])  # type: ignore[arg-type]
    await refused(redis, namespace, fetch, "errands: fetch: ARGV.2. .*nothing fetched")


async def test_a_cancel_with_a_ttl_redis_does_not_read_cancels_nothing(
    redis: Redis, namespace: str
) -> None:
    """SET PX refused the TTL '0100' after the job left its queue: the job in no set."""
    keys = Keys(namespace)
    a, _b = await a_chain(redis, namespace)
    cancel = Scripts(redis, keys).cancel(a, "work", 1, "0100")  # type: ignore[arg-type]
    await refused(redis, namespace, cancel, "errands: cancel: .*nothing cancelled")


async def test_a_settle_with_a_ttl_redis_does_not_read_settles_nothing(
    redis: Redis, namespace: str
) -> None:
    """A cancelled job's done record: SET PX refused '0100' after the job left its pool."""
    keys, job_id = await running_job(redis, namespace)
    s = Settle(job_id, "work", "cancelled", keys.cancelled, 1, 1, ttl_ms="0100", token="1")  # type: ignore[arg-type]
    settle = Scripts(redis, keys).settle(POOL, s)
    await refused(redis, namespace, settle, "errands: settle: .*nothing settled")


async def test_a_stored_linger_redis_does_not_read_ends_its_run_with_the_default(
    redis: Redis, namespace: str
) -> None:
    """A linger '0100' stored (by an older version, or by hand): wf_finish deleted the run's
    envelopes, then PEXPIRE raised: the member's ack failed, for ever. It lingers 24 h."""
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    spec = b'{"n":"work","f":"fail","p":0,"d":[]}'
    only = Member("a", "work", True, 0, b"{}", spec)
    assert await WorkflowScripts(redis, keys).enqueue("r1", "flow", 1000, [only], [], [])
    await redis.hset(keys.workflow("r1"), "linger", "0100")
    await scripts.heartbeat("p1", b"{}", 60_000, mode="register")
    fetched = await scripts.fetch("p1", 0, 10, [("work", 0)])
    assert fetched is not None and [f.id for f in fetched] == ["r1.a"]
    acked = Acked("r1.a", "work", b"1", 1_000, 60_000, 1, fetched[0].token)
    assert await scripts.ack("p1", [acked], False, 5_000, True) == []
    assert await redis.hget(keys.workflow("r1"), "status") == b"succeeded"
    assert 86_000_000 < await redis.pttl(keys.workflow("r1")) <= 86_400_000


@pytest.mark.parametrize("ttl", [1e14, float("inf"), float("nan"), -1])
def test_a_result_ttl_ack_would_refuse_is_refused_at_registration(ttl: float) -> None:
    """ack.lua refuses a TTL past 2^53 ms (it raised in SET PX after its first write): a job
    type kept so long had every ack of its jobs refused."""
    with pytest.raises(RegistrationError, match="result_ttl"):
        JobType("work", lambda: None, result_ttl=ttl)


async def test_a_cascade_meeting_a_seq_redis_does_not_read_walks_nothing(
    redis: Redis, namespace: str
) -> None:
    """wf_unfit spelt its own counter check out, as loose as is_int was: seq '007' passed, and
    INCR raised after the walk took its item off the list and removed b's edge (b waited for
    ever)."""
    keys = Keys(namespace)
    a, _b = await a_chain(redis, namespace)
    assert await redis.hdel(keys.workflow_of, a) == 1  # a ended: its walk left on the list
    await redis.zadd(keys.workflows_work, {"ok a  w1": 1})
    await redis.set(keys.seq, "007")
    cascade = WorkflowScripts(redis, keys).cascade()
    await refused(redis, namespace, cascade, "holds 007, not a counter: nothing walked")


@pytest.mark.parametrize("ttl", ["0100", "0", " 5", "1" + "0" * 17])
async def test_a_heartbeat_with_a_ttl_redis_does_not_read_registers_nothing(
    redis: Redis, namespace: str, ttl: str
) -> None:
    """heartbeat.lua registered the pool (ZADD), then SET PX refused the TTL: a pool with no
    info, its call failed."""
    scripts = Scripts(redis, Keys(namespace))
    beat = scripts.heartbeat("p1", b"{}", ttl, mode="register")  # type: ignore[arg-type]
    await refused(redis, namespace, beat, "errands: heartbeat: bad info TTL")


@pytest.mark.parametrize("expiry", [" 5", "5 ", "007", "1e3", "-1"])
async def test_an_enqueue_unique_with_a_lock_expiry_redis_does_not_read_stores_nothing(
    redis: Redis, namespace: str, expiry: str
) -> None:
    """The lock expiry is the score of the digest's entry: ' 5' passed tonumber() and raised in
    its ZADD after the envelope was stored and the lock taken (a job in no queue holding it)."""
    scripts = Scripts(redis, Keys(namespace))
    call = scripts.enqueue_unique("report", "j1", b"{}", 0, 0, "d1", expiry, 0)  # type: ignore[arg-type]
    await refused(redis, namespace, call, "errands: enqueue_unique: .*lock expiry")


@pytest.mark.parametrize("now", [" 5", "5 ", "007", "1e3", "-1"])
async def test_an_update_job_at_a_time_redis_does_not_read_updates_nothing(
    redis: Redis, namespace: str, now: str
) -> None:
    """The time is the score of the edit's history entry: ' 5' passed tonumber() and raised in
    its ZADD after the new envelope and the edit's record were stored (an edit not in history)."""
    keys = Keys(namespace)
    job = await Enqueuer(redis, namespace=namespace).enqueue("work")
    assert job is not None
    old = await redis.hget(keys.jobs, job.id)
    assert old is not None
    update = Scripts(redis, keys).update_job(
        job.id,
        "work",
        keys.queue("work"),
        old,
        old + b" ",
        5,
        1,
        b"{}",
        now,  # type: ignore[arg-type]
    )
    await refused(redis, namespace, update, "errands: update_job: bad priority or time")


@pytest.mark.parametrize("window", [str(10**17), str(2**53 + 2), " 5", "007", "1e3", "0"])
async def test_an_enqueue_dedup_with_a_window_redis_does_not_read_stores_nothing(
    redis: Redis, namespace: str, window: str
) -> None:
    """A window of 10^17 ms passed is_whole(), and Lua handed it to SET PX as '1e+17', which
    Redis refuses: it raised after the job was stored (Dedup(throttle=10**14) did so). The
    window is now an integer Redis reads in 1..MAX_MS, as every TTL a script takes."""
    scripts = Scripts(redis, Keys(namespace))
    call = scripts.enqueue_dedup("report", "j1", b"{}", 0, 0, "t", "report:k", window)  # type: ignore[arg-type]
    await refused(redis, namespace, call, "errands: enqueue_dedup: a throttle window")


@pytest.mark.parametrize(
    ("mode", "at"), [("schedule", " 5"), ("schedule", "nan"), ("delete", " 5"), ("delete", "007")]
)
async def test_a_move_at_a_time_redis_does_not_read_moves_nothing(
    redis: Redis, namespace: str, mode: str, at: str
) -> None:
    """tonumber() took ' 5' and 'nan': the dead job left its set and the call's answer was
    noted, then ZADD refused the time (its scheduled set's, or its history's on a delete):
    the job in no set. '007' went into the deletion's JSON record (not JSON)."""
    keys = Keys(namespace)
    await redis.hset(keys.jobs, "j1", b'{"id":"j1","n":"work","a":[]}')
    await redis.zadd(keys.dead, {"j1": 5})
    times = {"due_ms": at} if mode == "schedule" else {"now_ms": at}
    move = Scripts(redis, keys).move("j1", "work", keys.dead, mode, **times)  # type: ignore[arg-type]
    await refused(redis, namespace, move, "errands: move: bad time")
