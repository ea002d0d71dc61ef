"""ack.lua of six values a job (a name and its result TTL once per name, a job's own TTL and
envelopes only when given) against ack.lua of ten (commit BEFORE, read from git): the same
seeded states in two databases of one server, the same jobs acknowledged, the same replies, the
same keys after (each key's DUMP; its PTTL within a second), the same messages published.

Seeded at random per scenario: one to three job names (one partitioned), a dedup rerun waiting,
a workflow member, listeners, jobs acknowledged with TTLs that differ within a name, envelopes
for some, history on or off, stale attempt tokens (refused), duplicate ids, names that do not
match the fetch (unfit), ids never fetched, calls re-sent, and keys of another type. TIME is
pinned in both scripts (tombstones are scored with it).

Intended since: a name's own key of another type (its history, queue, partition keys) failed
the old ack's whole call; the new one leaves that name's jobs alone as unfit and acknowledges the
others, as the old ack did a call without that name's jobs (which it is compared with then:
the same keys after, the same acknowledged count, the name's jobs added to its unfit or refused
ids only; a call in which an id of the name is given under another name too is not compared:
the first of its entries to pass the fence is the call's, in both)."""

from __future__ import annotations

import os
import random
import re
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from errands import Dedup, Enqueuer
from errands.store.ackcall import ack_request, limit_keys
from errands.store.keys import Keys
from errands.store.luasource import lua_source
from errands.store.scripts import Acked, Arg, Scripts
from errands.workflows.store import Member, WorkflowScripts
from tests.support.luaat import lua_at

BEFORE = "7c3fc62fc591"  # main before ack.lua's six values a job
TIME = "redis.call('TIME')"
PINNED = "{'1800000000', '123456'}"
SCENARIOS = int(os.environ.get("ACK_DIFF_SCENARIOS", "160"))
SPEC = {"sms": "c=2"}
WHAT = ("acknowledged", "unfit", "refused", "published", "extras", "re-sent calls", "bad number",
        "another type", "a name's key")  # fmt: skip
END = b"(drained)"
RAW_WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"
NAMED_WRONGTYPE = re.compile(r"WRONGTYPE \S+ holds another type: nothing acknowledged")


def _pinned(source: str) -> str:
    assert TIME in source
    return source.replace(TIME, PINNED)


def _old_request(
    k: Keys, pool_id: str, done: Sequence[Acked], wake: bool, now_ms: int, history: bool
) -> tuple[list[str], list[Arg]]:
    """The KEYS and ARGV of ack.lua at BEFORE: ten values a job."""
    keys = ack_request(k, pool_id, [], wake, now_ms, history)[0]
    args: list[Arg] = [k.wake_channel, "1" if wake else "0", k.events_channel, now_ms]
    args += ("1" if history else "0", len(done), pool_id)
    index: dict[str, int] = {}
    for a in done:
        keys.append(k.done(a.id))
        i = index.setdefault(a.name, len(index) + 1)
        args += (a.id, a.name, i, a.result, a.started_ms, a.ttl_ms, a.attempt, a.token)
        args += (a.envelope_json, a.history_json)
    keys += (k.history_of(name) for name in index)
    keys += (k.queue(name) for name in index)
    for name in index:
        keys += limit_keys(k, name)
    return keys, args


async def _seed(redis: Redis, rng: random.Random, namespace: str) -> list[tuple[str, str, str]]:
    """Jobs fetched by pool p: (id, name, token) each."""
    keys = Keys(namespace)
    names = rng.sample(["work", "mail", "sms"], rng.randint(1, 3))
    async with Enqueuer(redis, namespace=namespace, strict=None) as enq:
        for name in names:
            for i in range(rng.randint(1, 5)):
                part = rng.choice("ab") if name == "sms" else None
                job_id = f"j{rng.getrandbits(64):x}"  # (the seed's: a queue orders ids)
                await enq.enqueue(name, {"i": i}, partition=part, job_id=job_id)
        if rng.random() < 0.3:
            dedup = Dedup("k", until="finished", rerun_latest=True)
            await enq.enqueue(names[0], {"d": 1}, dedup=dedup, job_id=f"j{rng.getrandbits(64):x}")
    if rng.random() < 0.3:
        spec = b'{"n":"%s","f":"fail","p":0,"d":%s}'
        name = names[0].encode()
        first = Member("a", names[0], True, 0, b"{}", spec % (name, b"[]"))
        then = Member("b", names[0], False, 0, b"{}", spec % (name, b'["a"]'))
        wf = WorkflowScripts(redis, keys)
        assert await wf.enqueue("r1", "flow", 0, [first, then], [("a", "b")], [])
    scripts = Scripts(redis, keys)
    await scripts.heartbeat("p", b"{}", 60_000, mode="register")
    got = await scripts.fetch("p", 1, 100, [(n, 0) for n in names], specs=SPEC)
    assert got is not None
    if rng.random() < 0.5:  # the dedup key's rerun waits for its running holder
        await Enqueuer(redis, namespace=namespace, strict=None).enqueue(
            names[0], {"d": 2}, dedup=Dedup("k", until="finished", rerun_latest=True)
        )
    fetched = [(f.id, names[f.queue_index - 1], f.token) for f in got]
    listen = [f.id for f in got if rng.random() < 0.3] + (["*"] if rng.random() < 0.2 else [])
    if listen:
        await redis.hset(keys.listening, mapping=dict.fromkeys(listen, 1))
    return fetched


def _acks(rng: random.Random, fetched: list[tuple[str, str, str]]) -> list[Acked]:
    """Acks of the fetched jobs, shuffled, with TTLs, envelopes and faults."""
    ttls = [0, 1_000, 60_000, 86_400_000]
    name_ttl = {name: rng.choice(ttls) for _, name, _ in fetched}
    done = []
    for job_id, name, token in rng.sample(fetched, len(fetched)):
        ttl = rng.choice(ttls) if rng.random() < 0.2 else name_ttl[name]
        a = Acked(job_id, name, rng.choice([b"null", b'{"v":1}']), rng.randint(1, 10**12), ttl, 1)
        a.token, a.attempt = token, rng.choice([1, 1, 2])
        if rng.random() < 0.2:
            a.envelope_json = b'{"n":"%s","a":{"e":1}}' % name.encode()
        if rng.random() < 0.15:
            a.history_json = b'{"n":"%s","a":"<omitted>"}' % name.encode()
        roll = rng.random()
        if roll < 0.08:
            a.token = "stale"  # refused by the fence
        elif roll < 0.14:
            a.name = rng.choice(["work", "mail", "sms", "other"])  # unfit when another
        elif roll < 0.2:
            done.append(Acked(job_id, name, b"1", 5, ttl, 1, "stale"))  # the stale one first
        done.append(a)
    if rng.random() < 0.3 and done:
        done.append(done[0])  # an id given twice
    if rng.random() < 0.2:
        done.append(Acked("never", "work", b"1", 1, 60_000, 1, "x"))
    return done


async def _break(redis: Redis, rng: random.Random, keys: Keys, done: list[Acked]) -> None:
    """A key of another type, now and then."""
    if rng.random() < 0.05 and done:
        rng.choice(done).ttl_ms = rng.choice([-1, 2**60])  # a bad TTL
    if rng.random() < 0.1 and done:
        key = rng.choice(
            [keys.stats, keys.running, keys.history_of(done[0].name), keys.ended, keys.listening,
             keys.partitions, keys.attempts, keys.history_data, keys.seq, *limit_keys(keys, "sms")]
        )  # fmt: skip
        await redis.delete(key)
        await redis.set(key, "x")


def _name_of_key(keys: Keys, call: Sequence[Acked], reply: Any) -> str | None:
    """The name of ``call`` one of whose own keys the old ack's error ``reply`` names, or None."""
    if not (isinstance(reply, tuple) and reply[1].startswith("WRONGTYPE ")):
        return None
    key = reply[1].split()[1]
    for name in {a.name for a in call}:
        own = [keys.history_of(name), keys.queue(name), *limit_keys(keys, name)]
        if key in own:
            return name
    return None


def _split(reply: Any) -> tuple[int, set[bytes], set[bytes]]:
    """An ack reply: acknowledged, the unfit ids, the refused ids."""
    count = int(reply[1])
    return int(reply[0]), set(reply[2 : 2 + count]), set(reply[2 + count :])


def _without_name(old: Any, new: Any, call: Sequence[Acked], name: str) -> None:
    """The new ack's ``new`` reply of ``call`` against the old ack's ``old`` of ``call`` less the
    jobs of ``name``: the same count acknowledged, the name's ids added to the unfit or refused
    ones only."""
    ids = {a.id.encode() for a in call if a.name == name}
    (done, unfit, refused), (was_done, was_unfit, was_refused) = _split(new), _split(old)
    assert done == was_done
    assert was_unfit <= unfit and unfit - was_unfit <= ids
    assert was_refused <= refused and refused - was_refused <= ids


def _pattern(keys: Keys) -> str:
    """Every key of the namespace."""
    return keys.prefix + "*"


Snapshot = dict[bytes, tuple[bytes | None, int]]  # key -> its DUMP and PTTL


async def _snapshot(redis: Redis, keys: Keys) -> Snapshot:
    out = {}
    async for key in redis.scan_iter(match=_pattern(keys), count=1000):
        out[key] = (await redis.dump(key), await redis.pttl(key))
    return out


def _same(a: Snapshot, b: Snapshot) -> None:
    """The same keys and DUMPs, and TTLs within a second (a rate key's, b's up to 2 s longer:
    lib/ratelog.lua's lim_tidy renews it to its window + 2 s, once at window + 1 s)."""
    assert a.keys() == b.keys()
    for key, (dump, ttl) in a.items():
        assert b[key][0] == dump, key
        slack = 2_000 if b":prate:" in key or b":prexp:" in key else 1_000
        assert (ttl < 0) == (b[key][1] < 0) and -1_000 < b[key][1] - ttl < slack, key


async def _run(redis: Redis, sha: str, keys: list[str], args: list[Arg]) -> Any:
    """The reply, or ("error", its text less the script's SHA and line)."""
    try:
        return await redis.evalsha(sha, len(keys), *keys, *args)
    except ResponseError as e:
        return ("error", re.sub(r" script: \w+, on @user_script:\d+\.", "", str(e)))


def _unenqueued(messages: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """``messages`` but the ``enqueued`` events: intended since the old ack, a workflow member
    it releases publishes one (lib/workflows.lua's wf_queue; see
    tests/workflows/test_member_events.py)."""
    return [m for m in messages if b'"event":"enqueued"' not in m[1]]


async def _drain(redis: Redis, pubsub: Any, channel: str) -> list[tuple[bytes, bytes]]:
    """The messages published since the last drain: read up to a marker published now."""
    await redis.publish(channel, END)
    got = []
    while True:
        m = await pubsub.get_message(timeout=5)
        assert m is not None
        if m["type"] == "message":
            if m["data"] == END:
                return got
            got.append((m["channel"], m["data"]))


@pytest.fixture
async def dbs(redis_url: str) -> AsyncIterator[tuple[Redis, Redis, Redis]]:
    """Databases 1 (the old ack's), 2 (the new one's) and 3 (seeded, then copied to both: a
    set or hash copied may be laid out otherwise than its original)."""
    base = redis_url.rsplit("/", 1)[0] if redis_url.count("/") > 2 else redis_url
    got = [Redis.from_url(f"{base}/{db}") for db in (1, 2, 3)]
    yield got[0], got[1], got[2]
    for r in got:
        await r.aclose()


def _tally(seen: Counter[str], reply: Any, heard: list[Any], args: list[Arg]) -> None:
    """What a call of a scenario covered."""
    if isinstance(reply, tuple):
        seen["bad number" if reply[1].startswith("errands: ack: ") else "another type"] += 1
        return
    unfit = int(reply[1])
    seen["acknowledged"] += int(reply[0])
    seen["unfit"] += unfit
    seen["refused"] += len(reply) - 2 - unfit
    seen["published"] += len(heard)
    seen["extras"] += int(args[7])


async def _compare(
    old: tuple[Redis, str], new: tuple[Redis, str], pubsub: Any, rng: random.Random,
    keys: Keys, done: list[Acked], seen: Counter[str],
) -> bool:  # fmt: skip
    """The calls of one scenario, each by the old ack then the new: the same replies and
    messages (or, a name's own key of another type, see the module's docstring). False when
    the scenario is not comparable (its keys differ then)."""
    history, wake = rng.random() < 0.6, rng.random() < 0.3
    calls = [done[:1], done[1:]] if rng.random() < 0.3 else [done]
    for again in range(2 if rng.random() < 0.4 else 1):  # re-sent
        for call in calls:
            a = await _run(*old, *_old_request(keys, "p", call, wake, 7, history))
            bad_name = _name_of_key(keys, call, a)
            if bad_name is not None:
                less = [x for x in call if x.name != bad_name]
                if {x.id for x in less} & {x.id for x in call if x.name == bad_name}:
                    return False
                a = await _run(*old, *_old_request(keys, "p", less, wake, 7, history))
                seen["a name's key"] += 1
            heard = await _drain(old[0], pubsub, keys.wake_channel)
            request = ack_request(keys, "p", call, wake, 7, history)
            b = await _run(*new, *request)
            if bad_name is not None and not isinstance(a, tuple):
                _without_name(a, b, call, bad_name)
            elif isinstance(a, tuple) and a[1].startswith("errands: ack: "):
                # (intended: a bad TTL is named by its name, or its job's extras)
                assert isinstance(b, tuple) and b[1].startswith("errands: ack: "), b
            elif isinstance(a, tuple) and a[1] == RAW_WRONGTYPE:
                # (intended: a key read before the first write, attempts or the jobs hash, is
                # named: lib/ackcheck.lua's ack_read)
                assert isinstance(b, tuple) and NAMED_WRONGTYPE.fullmatch(b[1]), b
            else:
                assert a == b, call
            assert _unenqueued(await _drain(old[0], pubsub, keys.wake_channel)) == _unenqueued(
                heard
            )
            _tally(seen, a, heard, request[1])
            seen["re-sent calls"] += again
    return True


async def _copied(seeded: Redis, keys: Keys) -> None:
    """The scenario's seeded keys copied to databases 1 and 2."""
    async for key in seeded.scan_iter(match=_pattern(keys)):
        assert await seeded.copy(key, key, destination_db=1)
        assert await seeded.copy(key, key, destination_db=2)


async def _listening(old: Redis, keys: Keys) -> Any:
    """A pub/sub of the scenario's channels on ``old``, its confirmations read."""
    pubsub = old.pubsub()
    await pubsub.subscribe(keys.events_channel, keys.wake_channel)
    await _drain(old, pubsub, keys.wake_channel)
    return pubsub


async def _same_and_cleared(
    old: Redis, new: Redis, seeded: Redis, keys: Keys, compared: bool = True
) -> None:
    """The scenario's keys the same in both databases (when ``compared``); then gone from all
    three."""
    if compared:
        _same(await _snapshot(old, keys), await _snapshot(new, keys))
    for db in (old, new, seeded):
        await db.delete(*[k async for k in db.scan_iter(_pattern(keys))], "_")


async def test_the_new_ack_does_what_the_old_did(
    dbs: tuple[Redis, Redis, Redis], tmp_path: Path
) -> None:
    old, new, seeded = dbs
    old_sha = await old.script_load(_pinned(lua_at(BEFORE, "ack", tmp_path)))
    new_sha = await new.script_load(_pinned(lua_source("ack")))
    seen: Counter[str] = Counter()
    for seed in range(SCENARIOS):
        rng = random.Random(seed)
        keys = Keys(f"d{seed}x{rng.getrandbits(32):x}")
        done = _acks(rng, await _seed(seeded, rng, keys.namespace))
        await _break(seeded, rng, keys, done)
        await _copied(seeded, keys)
        pubsub = await _listening(old, keys)
        try:
            same = await _compare((old, old_sha), (new, new_sha), pubsub, rng, keys, done, seen)
        except AssertionError as e:
            raise AssertionError(f"scenario {seed}: {e}") from e
        finally:
            await pubsub.aclose()
        seen["not compared"] += not same
        await _same_and_cleared(old, new, seeded, keys, same)
    print(dict(seen))
    assert all(seen[what] > 0 for what in WHAT), seen
