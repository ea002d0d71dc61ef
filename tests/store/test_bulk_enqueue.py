"""The enqueue script's column form (store/bulk.py, lua/enqueue.lua): reads and writes batched
per 1,000 jobs, and still each job stored once, in order, with each job's outcome."""

from __future__ import annotations

import gc
import math
from collections.abc import Awaitable, Callable

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from errands import Enqueuer, Job, building
from errands.serialization import JSONSerializer, PlainEnvelopes, SerializationError
from errands.store.bulk import enqueue_request, job_spec, pack_call, pack_evalsha
from errands.store.keys import Keys
from errands.store.scripts import Scripts


async def test_a_call_across_the_chunks_stores_each_job_once_and_a_resend_nothing(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    n = 2500  # three chunks of the script's reads and writes
    names = ["a", "b", "c"]
    ids = [f"j{i}" for i in range(n)]
    envelopes = [b'{"i":%d}' % i for i in range(n)]
    specs = [
        job_spec(i % 3 + 1, 5 if i % 7 == 0 else 0, 10**13 if i % 11 == 0 else 0, "")
        for i in range(n)
    ]
    ids[2400] = ids[5]  # the same id twice in one call: the second is not stored
    await redis.hset(keys.jobs, "j1200", b"another job")  # an id already taken
    await redis.zadd(keys.ended, {"j1300": 1})  # an id whose job ended recently
    await redis.set(keys.done("j1301"), b"{}")  # an id with a result record
    expected = [1201, 1301, 1302, 2401]  # (1-based) the jobs found already there
    assert [
        i + 1 for i in await scripts.enqueue_columns((names, ids, envelopes, specs))
    ] == expected
    stored = n - 4
    assert await redis.hlen(keys.jobs) == stored + 1
    queued = sum([await redis.zcard(keys.queue(name)) for name in names])
    scheduled = sum([await redis.zcard(keys.scheduled(name)) for name in names])
    assert queued + scheduled == stored
    assert scheduled == len([i for i in range(n) if i % 11 == 0])
    assert await redis.hget(keys.priorities, "j7") == b"5"
    assert await redis.hget(keys.priorities, "j1") is None
    assert await redis.hget(keys.jobs, "j2399") == b'{"i":2399}'
    assert await redis.hget(keys.jobs, "j5") == b'{"i":5}'
    # each queue: priority first, then the order of the call
    head = [m.decode() for m in await redis.zrange(keys.queue("b"), 0, -1)]
    b_jobs = [i for i in range(n) if i % 3 == 1 and i % 11 and i not in (1300,)]
    by_order = sorted(b_jobs, key=lambda i: (0 if i % 7 == 0 else 1, i))
    assert head == [f"j{i}" for i in by_order]
    assert {m.decode() for m in await redis.smembers(keys.names)} == set(names)
    # the re-send (redis-py after a timeout): the same answer, nothing more stored
    seq = await redis.get(keys.seq)
    assert [
        i + 1 for i in await scripts.enqueue_columns((names, ids, envelopes, specs))
    ] == expected
    assert await redis.hlen(keys.jobs) == stored + 1
    assert sum([await redis.zcard(keys.queue(name)) for name in names]) == queued
    assert await redis.get(keys.seq) == seq


async def test_enqueue_many_stores_jobs_with_a_partition_and_their_events(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    enqueuer = Enqueuer(redis, namespace=namespace, strict=None)
    await redis.set(keys.listening, 1)
    pubsub = redis.pubsub()
    await pubsub.subscribe(keys.events_channel)
    await pubsub.get_message(timeout=1)
    jobs = await enqueuer.enqueue_many(
        [("p", {"i": i}, {"partition": f"t{i % 2}", "priority": i}) for i in range(4)]
        + [("q", {}, {"job_id": "plain"})]
    )
    assert [j.existed for j in jobs] == [False] * 5
    assert await redis.hget(keys.partitions, jobs[1].id) == b"t1"
    assert await redis.zcard(keys.partition_queue("p")) == 4
    assert await redis.zcard(keys.partitions_ready("p")) == 2
    queue = [m.decode() for m in await redis.zrange(keys.queue("p"), 0, -1)]
    assert queue == [j.id for j in reversed(jobs[:4])]  # higher priority first
    events = []
    while (message := await pubsub.get_message(timeout=1)) is not None:
        events.append(message["data"])
    assert events == [
        b'{"event":"enqueued","id":"%s","name":"%s"}' % (j.id.encode(), j.name.encode())
        for j in jobs
    ]
    await pubsub.aclose()
    await enqueuer.aclose()


# -- the packed call (store/pinned.py: BulkEnqueue) and its fallback ----------------------------
async def test_enqueue_many_survives_a_flushed_script_cache_and_killed_connections(
    own_redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    async with Enqueuer.from_url(_url(own_redis), namespace=namespace, strict=None) as enqueuer:
        await enqueuer.enqueue_many([("a", {"i": 0})])
        await own_redis.script_flush()  # NOSCRIPT on the packed call: the general path loads it
        first = await enqueuer.enqueue_many(
            [("a", {"i": i}, {"job_id": f"f{i}"}) for i in range(3)]
        )
        assert [j.existed for j in first] == [False] * 3
        await own_redis.client_kill_filter(_type="normal", skipme=True)  # the pool's connections
        after = await enqueuer.enqueue_many(
            [("a", {"i": i}, {"job_id": f"k{i}"}) for i in range(3)]
        )
        assert [j.existed for j in after] == [False] * 3
        again = await enqueuer.enqueue_many([("a", {}, {"job_id": "k0"})])
        assert again[0].existed
        assert enqueuer._bulk.calls == 4
    assert await own_redis.zcard(keys.queue("a")) == 7


async def test_a_wrong_type_fails_the_packed_call_and_stores_nothing(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    await redis.set(keys.queue("b"), "not a sorted set")
    async with Enqueuer(redis, namespace=namespace, strict=None) as enqueuer:
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            await enqueuer.enqueue_many([("a", {}), ("b", {})])
        assert await redis.hlen(keys.jobs) == 0
        assert len(await enqueuer.enqueue_many([("a", {})])) == 1  # the connection is fine


def test_a_column_request_is_packed_by_hiredis_as_by_the_python_packer() -> None:
    ids, envelopes = ["j1", "jé"], [b'{"x":"\xc3\xa9"}', b"{}"]
    request = enqueue_request(Keys("ns"), ["a", "é"], ids, envelopes, ["1", "2 5 0 p"])
    assert pack_call(b"a" * 40, *request) == pack_evalsha("a" * 40, *request)
    assert pack_call(b"a" * 40, ["k"], [True]) == pack_evalsha("a" * 40, ["k"], [True])  # a bool


# -- jobs given no options (building.py plain_job, serialization.py PlainEnvelopes) -------------
PLAIN_ARGS = [
    {},
    {"i": 1, "f": 0.1, "s": 'é\u2028"q"', "l": [1, {"x": None}], "b": True},
    {1: "a non-str key", "n": None},
    {"t": "null", "big": 2**63 - 1},
]


@pytest.mark.parametrize("args", PLAIN_ARGS)
@pytest.mark.parametrize("at", [1_700_000_000.123456, 5, 0.1])
def test_a_plain_envelope_is_the_serializer_s_bytes_or_none(
    args: dict[object, object], at: float
) -> None:
    job = Job("name-é", dict(args), id="x", enqueued_at=at)  # type: ignore[arg-type]
    got = PlainEnvelopes(at).encode(job.name, job.args)
    assert got is None or got == JSONSerializer().dumps(job.envelope())
    assert (got is None) == (b"null" in JSONSerializer().dumps(job.envelope()))


@pytest.mark.parametrize("args", [{"x": math.nan}, {"x": [math.inf]}, {"x": object()}])
def test_args_json_cannot_hold_go_the_general_way(args: dict[str, object]) -> None:
    assert PlainEnvelopes(1.0).encode("a", args) is None


async def test_enqueue_many_of_plain_jobs_checks_each_name_once_and_stores_the_same(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked: list[str] = []

    def counting(name: str) -> str:
        checked.append(name)
        return name

    monkeypatch.setattr(building, "check_job_name", counting)
    enqueuer = Enqueuer(redis, namespace=namespace, strict=None)
    items = [(("a", "b")[i % 2], {"i": i, "f": 0.5}) for i in range(100)]
    jobs = await enqueuer.enqueue_many([*items, ("a", {"n": None}), ("b", {}, {"priority": 1})])
    assert sorted(checked) == ["a", "b", "b"]  # (the job with options: checked on its own)
    for job in jobs:  # each envelope as the general path encodes it
        stored = await redis.hget(Keys(namespace).jobs, job.id)
        assert stored == JSONSerializer().dumps(job.envelope())
    with pytest.raises(
        SerializationError, match="the args of job 'a' is not JSON-serializable: x is not a finite"
    ):
        await enqueuer.enqueue_many([("a", {"i": 1}), ("a", {"x": math.nan})])
    with pytest.raises(SerializationError, match="the args of job 'a' is not JSON-serializable"):
        await enqueuer.enqueue_many([("a", {"x": object()})])
    assert await redis.hlen(Keys(namespace).jobs) == len(jobs)


def _url(redis: Redis) -> str:
    kwargs = redis.connection_pool.connection_kwargs
    return f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs.get('db', 0)}"


async def test_an_id_twice_with_the_same_envelope_answers_the_same_when_re_sent(
    redis: Redis, namespace: str
) -> None:
    scripts = Scripts(redis, Keys(namespace))
    call = (["a"], ["same", "same"], [b"{}", b"{}"], [job_spec(1, 0, 0, "")] * 2)
    assert await scripts.enqueue_columns(call) == [1]
    assert await scripts.enqueue_columns(call) == [1]  # the re-send: the same answer
    assert await redis.zcard(Keys(namespace).queue("a")) == 1


@pytest.mark.parametrize("spec", ["0", "2", "x", "1 0 0", "1 1001 0 ", "1 -5000 0 p"])
async def test_a_bad_job_spec_fails_the_call_before_any_write(
    redis: Redis, namespace: str, spec: str
) -> None:
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    call = (["a"], ["ok", "bad"], [b"{}", b"{}"], [job_spec(1, 0, 0, "p"), spec])
    with pytest.raises(ResponseError, match="bad job spec"):
        await scripts.enqueue_columns(call)
    assert await redis.keys(keys.prefix.replace("{", "\\{").replace("}", "\\}") + "*") == []


@pytest.mark.parametrize("key", ["priorities", "names", "partitions"])
async def test_a_wrong_typed_shared_key_fails_the_call_before_any_write(
    redis: Redis, namespace: str, key: str
) -> None:
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    await redis.set(getattr(keys, key), "not mine")
    call = (["a"], ["j"], [b"{}"], [job_spec(1, 5, 0, "p")])
    with pytest.raises(ResponseError, match=r"WRONGTYPE .* no job of this call was stored"):
        await scripts.enqueue_columns(call)
    assert await redis.hlen(keys.jobs) == 0 and await redis.get(keys.seq) is None


@pytest.mark.parametrize("listening", [False, True])
async def test_a_result_record_alone_marks_its_id_with_or_without_listeners(
    redis: Redis, namespace: str, listening: bool
) -> None:
    """The result records and the events' listeners are asked in one EXISTS (lua/enqueue.lua):
    a listener alone does not make a job count as ended, nor a result record a listener."""
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    await redis.set(keys.done("old"), b"{}")
    if listening:
        await redis.hset(keys.listening, "*", "9999999999999")
    pubsub = redis.pubsub()
    await pubsub.subscribe(keys.events_channel)
    await pubsub.get_message(timeout=1)
    assert await scripts.enqueue_columns((["a"], ["old"], [b"{}"], [job_spec(1, 0, 0, "")])) == [0]
    assert await scripts.enqueue_columns((["a"], ["new"], [b"{}"], [job_spec(1, 0, 0, "")])) == []
    assert [m.decode() for m in await redis.zrange(keys.queue("a"), 0, -1)] == ["new"]
    message = await pubsub.get_message(timeout=1)
    published = None if message is None else message["data"]
    expected = b'{"event":"enqueued","id":"new","name":"a"}' if listening else None
    assert published == expected
    await pubsub.aclose()


# -- the objects a call allocates (the garbage collector's count) -----------------------------
class _Tagging:
    async def enqueue(self, job: Job, call_next: Callable[[], Awaitable[Job]]) -> Job:
        job.args["tag"] = 1  # a hook may change the args: the caller's dict stays as given
        return await call_next()


async def test_a_plain_job_holds_the_args_given_unless_a_middleware_may_change_them(
    redis: Redis, namespace: str
) -> None:
    args = {"i": 1}
    (job,) = await Enqueuer(redis, namespace=namespace, strict=None).enqueue_many([("a", args)])
    assert job.args is args  # not copied: one dict less per job (docs/enqueueing.md)
    hooked = Enqueuer(redis, namespace=namespace, strict=None, middleware=[_Tagging()])
    (job,) = await hooked.enqueue_many([("a", args)])
    assert job.args == {"i": 1, "tag": 1} and args == {"i": 1}


async def test_enqueue_many_allocates_one_collected_object_per_plain_job(
    redis: Redis, namespace: str
) -> None:
    """What the call leaves allocated, as Python's collector counts it (its young generation's
    count: each allocation of a container, less each freed): the Job, not a copy of its args
    too. Each such object counts toward the next collection, and a full one walks the heap."""
    enqueuer = Enqueuer(redis, namespace=namespace, strict=None)
    await enqueuer.enqueue_many([("a", {"i": -1})])  # (the connection, the name's heads)
    items = [("a", {"i": i}) for i in range(1000)]
    gc.collect()
    gc.disable()
    try:
        before = gc.get_count()[0]
        jobs = await enqueuer.enqueue_many(items)
        allocated = gc.get_count()[0] - before
    finally:
        gc.enable()
    assert len(jobs) == 1000 and 1000 <= allocated < 1100  # (was 2,009 with a copy of the args)
