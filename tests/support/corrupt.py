"""The corrupt-data sweep's namespace and its corruptions (tests/admin/test_corrupt_sweep.py,
tests/web/test_corrupt_pages.py).

A realistic namespace is built once (a real pool: jobs finished, dead, retrying, scheduled,
queued, one running, a schedule, limits, a partition, a workflow) and kept as a template: each
test copies its keys into a namespace of its own (DUMP/RESTORE, the running job frozen as it
was), then applies one corruption. Key names come from ``Keys`` only."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import orjson
from redis.asyncio import Redis

from errands import Client, Enqueuer, Workflow
from errands.limits import Concurrency, Rate
from errands.store.keys import Keys
from tests.support.dashboard import make_pool

__all__ = ["CORRUPTIONS", "WRONG_TYPES", "Corruption", "Template", "build_template", "copy"]


@dataclass(frozen=True)
class Template:
    namespace: str
    dumps: dict[str, bytes]  # key suffix (after the prefix) -> DUMP
    ids: dict[str, str]  # what -> job id (ok, dead, retry, running, scheduled, queued)
    pool: str
    run: str  # the workflow run id


async def _build(url: str, namespace: str) -> Template:
    keys = Keys(namespace)
    pool = make_pool(url, namespace)

    @pool.job("part", max_concurrency=3)
    async def part(job: Any) -> None:
        return None

    async with (
        Client.from_url(url, namespace=namespace) as client,
        Enqueuer.from_url(url, namespace=namespace, strict=None) as enq,
    ):
        ids: dict[str, str] = {}
        await pool.start()
        for what, name in (("ok", "ok"), ("dead", "boom"), ("retry", "flaky"), ("running", "slow")):
            job = await enq.enqueue(name, {"password": "x", "n": 1})
            assert job is not None
            ids[what] = job.id
        await enq.enqueue("part", {})  # (a name with a max_concurrency)
        later = await enq.enqueue("ok", {"later": True}, delay=3600)
        queued = await enq.enqueue("parked", {"waits": True}, partition="p1")
        assert later is not None and queued is not None
        ids["scheduled"], ids["queued"] = later.id, queued.id
        await client.add_schedule("nightly", "ok", "0 3 * * *", {"x": 1})
        await client.set_limits("ok", [Concurrency(2)], strict=None)
        await client.set_limits("parked", [Rate(5, timedelta(minutes=1))], strict=None)
        wf = Workflow("flow")
        wf.add("ok", {}, id="a")
        wf.add("ok", {}, id="b", after=["a"])
        run = await enq.enqueue_workflow(wf)
        for _ in range(500):
            if (
                await client.history_count() >= 4
                and await client.dead_count() == 1
                and (await client.retry_jobs()).total == 1
                and await client.redis.hget(keys.checkins, ids["running"]) is not None
                and (await client.workflow(run.id).status()).status != "running"
            ):
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("the template namespace did not settle")
        pool_id = (await client.worker_pools())[0].id
        dumps = {}
        async for key in client.redis.scan_iter(match=f"errands:{{{namespace}}}:*", count=1000):
            if await client.redis.type(key) == b"none":
                continue
            dumps[key.decode()[len(keys.prefix) :]] = await client.redis.dump(key)
        pool.release_slow.set()  # type: ignore[attr-defined]
        await pool.stop(grace=1)
    return Template(namespace, dumps, ids, pool_id, run.id)


def build_template(url: str) -> Template:
    return asyncio.run(_build(url, "tpl" + uuid.uuid4().hex[:10]))


async def copy(redis: Redis, template: Template, namespace: str) -> Keys:
    keys = Keys(namespace)
    async with redis.pipeline(transaction=False) as pipe:
        for suffix, dump in template.dumps.items():
            pipe.restore(keys.prefix + suffix, 0, dump, replace=True)
        await pipe.execute()
    return keys


Apply = Callable[[Redis, Keys, Template], Awaitable[Any]]


@dataclass(frozen=True)
class Corruption:
    id: str
    apply: Apply


def _hset(
    key: Callable[[Keys, Template], str], field: Callable[[Template], str], value: bytes
) -> Apply:
    async def apply(redis: Redis, keys: Keys, t: Template) -> None:
        await redis.hset(key(keys, t), field(t), value)

    return apply


def _set(key: Callable[[Keys, Template], str], value: bytes) -> Apply:
    async def apply(redis: Redis, keys: Keys, t: Template) -> None:
        await redis.set(key(keys, t), value)

    return apply


def _member(key: Callable[[Keys, Template], str], member: bytes, score: float = 1.0) -> Apply:
    async def apply(redis: Redis, keys: Keys, t: Template) -> None:
        await redis.zadd(key(keys, t), {member: score})

    return apply


def _add(key: Callable[[Keys, Template], str], member: bytes) -> Apply:
    async def apply(redis: Redis, keys: Keys, t: Template) -> None:
        await redis.sadd(key(keys, t), member)

    return apply


NUMBERS = (b"abc", b"1.5e3", b"", b"\xff\xfe", "\u00b2".encode())  # (a digit to str.isdigit)
JSONS = (b"{{not json", b"[1, 2]", b'"text"', b"\xff\xfe\x00", b"null", b"12")
ENVELOPES = (
    *JSONS,
    b'{"n": "ok", "a": {}, "f": "many", "t": "x", "d": [1]}',
    b'{"n": 5, "a": {}}',
    b'{"n": "ok", "a": [1], "m": 3, "w": "x", "k": 4}',
)
RECORDS = (
    *JSONS,
    b'{"status": 3, "job": [1], "attempt": "x", "started": "s", "finished": {}}',
    b'{"j": "nope", "r": 1, "b": "x", "e": [], "a": "one"}',
    b'{"status": "finished", "job": {"n": 7, "a": 3}, "error": "text"}',
)
OBJECTS = (
    *JSONS,
    b'{"a": "b"}',
    b'{"host": 1, "pid": "x", "job_names": "ok", "quiet_since": "q"}',
    # the fields of errors, checkins, checkpoints and relays, of other types
    b'{"error": 5, "traceback": 3, "message": [5], "at": "x", "done": "x", "runtime": "y",'
    b' "cursor": [1], "backlog": "b", "lag": "l", "seen": "s"}',
)


def _k(attr: str, *args: Callable[[Template], str]) -> Callable[[Keys, Template], str]:
    def key(keys: Keys, t: Template) -> str:
        value = getattr(keys, attr)
        return value(*(a(t) for a in args)) if args else value

    return key


def _id(what: str) -> Callable[[Template], str]:
    return lambda t: t.ids[what]


def _c(value: str) -> Callable[[Template], str]:
    return lambda _t: value


def _minute(keys: Keys, t: Template) -> str:
    return keys.metrics_minute(int(time.time()) // 60 * 60)


def _pool(t: Template) -> str:
    return t.pool


def _run(t: Template) -> str:
    return t.run


def _hist(what: str) -> Callable[[Template], str]:
    return lambda t: f"{t.ids[what]}:1"


async def _recent_relay(redis: Redis, keys: Keys, t: Template) -> None:
    """A relay entry reported now, each of its other fields of a type no relay writes."""
    entry = {
        "at": time.time(),
        "every": "x",
        "pid": "p",
        "backlog": "b",
        "oldest": "o",
        "last_batch_at": "l",
        "started_at": [],
        "relayed": [1],
        "skipped": "s",
        "error": 5,
    }
    await redis.hset(keys.outbox_relays, "r1", orjson.dumps(entry))  # fmt: skip


def _corruptions() -> list[Corruption]:
    out: list[Corruption] = []

    def add(id: str, values: tuple[bytes, ...], make: Callable[[bytes], Apply]) -> None:
        out.extend(Corruption(f"{id}={v!r}", make(v)) for v in values)

    # counters and numeric hash fields
    add("running[slow]", NUMBERS, lambda v: _hset(_k("running"), _c("slow"), v))
    add("running[ok]", NUMBERS, lambda v: _hset(_k("running"), _c("ok"), v))
    add("limits[part]", NUMBERS, lambda v: _hset(_k("limits"), _c("part"), v))
    add("limits[parked]", NUMBERS, lambda v: _hset(_k("limits"), _c("parked"), v))
    add("stats[processed]", NUMBERS, lambda v: _hset(_k("stats"), _c("processed"), v))
    add("stats[dead]", NUMBERS, lambda v: _hset(_k("stats"), _c("dead"), v))
    add(
        "prun[parked]",
        NUMBERS,
        lambda v: _hset(_k("partitions_running", _c("parked")), _c("p1"), v),
    )
    add("recov[queued]", NUMBERS, lambda v: _hset(_k("recoveries"), _id("queued"), v))
    add("wf.created", NUMBERS, lambda v: _hset(_k("workflow", _run), _c("created"), v))
    add("wf.size", NUMBERS, lambda v: _hset(_k("workflow", _run), _c("size"), v))
    add("wf.finished", NUMBERS, lambda v: _hset(_k("workflow", _run), _c("finished"), v))
    add(
        "schedule_state",
        NUMBERS,
        lambda v: _hset(_k("schedule_state", _c("nightly")), _c("last"), v),
    )
    add("quietreq", NUMBERS, lambda v: _hset(_k("quiet_requests"), _pool, v))
    # JSON envelopes and records
    for what in ("ok", "dead", "retry", "running", "scheduled", "queued"):
        add(f"jobs[{what}]", ENVELOPES, lambda v, w=what: _hset(_k("jobs"), _id(w), v))  # type: ignore[misc]
    add("errors[dead]", OBJECTS, lambda v: _hset(_k("errors"), _id("dead"), v))
    add("checkin[running]", OBJECTS, lambda v: _hset(_k("checkins"), _id("running"), v))
    add("ckpt[running]", OBJECTS, lambda v: _hset(_k("checkpoints"), _id("running"), v))
    add("histdata[ok]", RECORDS, lambda v: _hset(_k("history_data"), _hist("ok"), v))
    add("done[ok]", RECORDS, lambda v: _set(_k("done", _id("ok")), v))
    add("done[ok]=attempt", (b"9", b"1", b"-1"), lambda v: _set(_k("done", _id("ok")), v))
    add("pool_info", OBJECTS, lambda v: _set(_k("pool_info", _pool), v))
    add("serves", OBJECTS, lambda v: _set(_k("serves", _pool), v))
    add("periodic[nightly]", OBJECTS, lambda v: _hset(_k("schedules"), _c("nightly"), v))
    add("periodic_code[x]", OBJECTS, lambda v: _hset(_k("code_schedules"), _c("x"), v))
    add("rlimits[ok]", OBJECTS, lambda v: _hset(_k("runtime_limits"), _c("ok"), v))
    add("climits[part]", OBJECTS, lambda v: _hset(_k("code_limits"), _c("part"), v))
    add("outbox", OBJECTS, lambda v: _hset(_k("outbox_relays"), _c("r1"), v))
    add("wf.env[b]", ENVELOPES, lambda v: _hset(_k("workflow", _run, _c("env")), _c("b"), v))
    add(
        "prate[parked]",
        (*NUMBERS, b"#00000000xx", b"1" * 13 + b"x" * 13),
        lambda v: _hset(_k("rate_log", _c("parked")), _c("60000"), v),
    )
    add(
        "pq[parked]",
        (b"p1\x00abc\x00x", b"p1\x00", b"\xff\xfe"),
        lambda v: _member(_k("partition_queue", _c("parked")), v, 0),
    )
    add("wf.nodes[b]", OBJECTS, lambda v: _hset(_k("workflow", _run, _c("nodes")), _c("b"), v))
    add("wf.res[a]", OBJECTS, lambda v: _hset(_k("workflow", _run, _c("res")), _c("a"), v))
    out.append(Corruption("outbox.recent", _recent_relay))
    add("metrics", NUMBERS, lambda v: _hset(_minute, _c("done"), v))
    # non-UTF-8 names and members
    bad = b"\xff\xfe"
    out.append(Corruption("names+bytes", _add(_k("names"), bad)))
    out.append(Corruption("paused+bytes", _add(_k("paused"), bad)))
    out.append(Corruption("pools+bytes", _member(_k("pools"), bad, 1e12)))
    out.append(Corruption("dead+bytes", _member(_k("dead"), bad)))
    out.append(Corruption("queue+bytes", _member(_k("queue", _c("ok")), bad)))
    out.append(Corruption("hist+bytes", _member(_k("history_of", _c("ok")), bad, 2e12)))
    out.append(Corruption("wfidx+bytes", _member(_k("workflows"), bad, 2e12)))
    out.append(Corruption("ip+bytes", _member(_k("in_progress", _pool), bad)))
    out.append(Corruption("stats+bytes", _hset(_k("stats"), _c("processed"), bad)))
    return out


CORRUPTIONS = _corruptions()


async def _wrong(redis: Redis, key: str) -> None:
    await redis.delete(key)
    await redis.set(key, b"wrong type")


def _wrong_type(attr: str, *args: Callable[[Template], str]) -> Corruption:
    async def apply(redis: Redis, keys: Keys, t: Template) -> None:
        await _wrong(redis, _k(attr, *args)(keys, t))

    return Corruption(attr + ("(...)" if args else ""), apply)


WRONG_TYPES = [
    _wrong_type("jobs"),
    _wrong_type("running"),
    _wrong_type("limits"),
    _wrong_type("stats"),
    _wrong_type("dead"),
    _wrong_type("cancelled"),
    _wrong_type("errors"),
    _wrong_type("checkins"),
    _wrong_type("paused"),
    _wrong_type("pools"),
    _wrong_type("history_data"),
    _wrong_type("schedules"),
    _wrong_type("runtime_limits"),
    _wrong_type("workflows"),
    _wrong_type("queue", _c("ok")),
    _wrong_type("scheduled", _c("ok")),
    _wrong_type("retry", _c("flaky")),
    _wrong_type("history_of", _c("ok")),
    _wrong_type("in_progress", _pool),
    _wrong_type("pool_info", _pool),
]
