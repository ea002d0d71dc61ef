"""reap.lua of this tree against reap.lua of commit BEFORE (read from git, called with the same
arguments): the same seeded dead pools in two databases of one server, the same calls, the same
replies, the same keys after (each key's DUMP; its PTTL within a second), the same messages
published. TIME is pinned in both.

Seeded at random per scenario (test_ack_differential.py's _seed: one to three job names, one
partitioned, a dedup rerun waiting, a workflow member, listeners), then: cancel or destroy
requests, recovery counts at the limit (buried), a malformed entry, history on or off, calls
re-sent, and, in half the scenarios, one job name's own key (its queue, partitions running,
partition queue, partitions ready or history) SET to a string.

Intended since: such a key refused BEFORE's whole reap ('WRONGTYPE <key> holds another type:
nothing reaped'); this tree leaves that name's entries alone and reaps the others, as BEFORE did
a call without that name's entries (which it is compared with then: the same keys after, the
same counts, and the name's entries and key named in the reply's third list). The calls are
sent as not ending a read (ARGV[9] 0: the pool is not held, which BEFORE, its call without
those entries leaving nothing alone, would not do either)."""

from __future__ import annotations

import os
import random
from collections import Counter
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from errands.store.keys import Keys
from errands.store.luasource import lua_source
from errands.store.reapcall import reap_request
from tests.store.test_ack_differential import (
    _copied,
    _drain,
    _listening,
    _pinned,
    _run,
    _same_and_cleared,
    _seed,
    dbs,
)
from tests.support.luaat import lua_at

__all__ = ["dbs"]  # (the fixture, imported)

BEFORE = "497c0b8"  # main before reap.lua left a name with a key of another type alone
SCENARIOS = int(os.environ.get("REAP_DIFF_SCENARIOS", "120"))
FAMILIES = ("queue", "partitions_running", "partition_queue", "partitions_ready", "history_of")
WHAT = ("requeued", "buried", "cancelled", "published", "re-sent calls", "a name's key",
        "key left alone")  # fmt: skip
ERR, MALFORMED = b'{"error":"poison"}', b'{"error":"malformed"}'
Member = tuple[bytes | str, str, str]


async def _dead(seeded: Redis, rng: random.Random, keys: Keys) -> tuple[list[Member], str | None]:
    """Pool p of the seeded scenario dead, its jobs' cancel requests and recovery counts drawn,
    maybe a malformed entry and one name's key of another type; its entries as the reaper
    reads them, and the name whose key was broken (or None)."""
    fetched = await _seed(seeded, rng, keys.namespace)
    for id, _, _ in fetched:
        if rng.random() < 0.15:
            await seeded.hset(keys.cancel_requests, id, rng.choice(["cancel", "destroy"]))
        if rng.random() < 0.2:
            await seeded.hset(keys.recoveries, id, 2)  # (the limit is 3: buried)
    if rng.random() < 0.2:
        await seeded.zadd(keys.in_progress("p"), {b"jmalformed": 0})
    await seeded.zadd(keys.pools, {"p": 1})
    raw = await seeded.zrange(keys.in_progress("p"), 0, -1)
    members: list[Member] = []
    for m in raw:
        id, _, name = m.decode().partition(":")
        members.append((m, id, name))
    bad = None
    names = sorted({name for _, _, name in members if name})
    if names and rng.random() < 0.5:
        bad = rng.choice(names)
        await seeded.set(getattr(keys, rng.choice(FAMILIES))(bad), "x")
    return members, bad


def _request(keys: Keys, members: list[Member], history: bool) -> tuple[list[str], list[Any]]:
    return reap_request(keys, "p", (60_000, 3), (ERR, MALFORMED), members, history, {})


async def _compare(
    old: tuple[Redis, str], new: tuple[Redis, str], pubsub: Any, rng: random.Random,
    keys: Keys, members: list[Member], bad: str | None, seen: Counter[str],
) -> None:  # fmt: skip
    """The calls of one scenario, each by BEFORE's reap then this tree's."""
    history = rng.random() < 0.6
    for again in range(2 if rng.random() < 0.3 else 1):  # re-sent
        a = await _run(*old, *_request(keys, members, history))
        left: list[Member] = []
        if bad is not None and isinstance(a, bytes) and a.startswith(b"WRONGTYPE"):
            assert a.endswith(b"holds another type: nothing reaped"), a
            left = [m for m in members if m[2] == bad]
            less = [m for m in members if m[2] != bad]
            a = await _run(*old, *_request(keys, less, history))
            seen["a name's key"] += 1
        heard = await _drain(old[0], pubsub, keys.wake_channel)
        b = await _run(*new, *_request(keys, members, history))
        assert not isinstance(a, bytes | tuple), a  # (nothing else refuses these calls)
        if left:  # (intended: the name's entries left alone, named in a third list)
            assert isinstance(b, list) and b[:5] == a[:5], (a, b)
            key_list = b[-1]
            assert int(key_list[0]) == len(left) and key_list[1] == bad.encode(), b
            assert b[5:-3] == a[5:], (a, b)  # (the stats fields replaced)
            seen["key left alone"] += len(left) * (again == 0)
        else:
            assert a == b, (a, b)
        assert await _drain(old[0], pubsub, keys.wake_channel) == heard
        seen["requeued"] += int(a[0])
        seen["buried"] += int(a[1])
        seen["cancelled"] += int(a[3])
        seen["published"] += len(heard)
        seen["re-sent calls"] += again


async def test_the_new_reap_does_what_the_old_did(
    dbs: tuple[Redis, Redis, Redis], tmp_path: Path
) -> None:
    old, new, seeded = dbs
    old_sha = await old.script_load(_pinned(lua_at(BEFORE, "reap", tmp_path)))
    new_sha = await new.script_load(_pinned(lua_source("reap")))
    seen: Counter[str] = Counter()
    for seed in range(SCENARIOS):
        rng = random.Random(seed)
        keys = Keys(f"r{seed}x{rng.getrandbits(32):x}")
        members, bad = await _dead(seeded, rng, keys)
        await _copied(seeded, keys)
        pubsub = await _listening(old, keys)
        try:
            await _compare((old, old_sha), (new, new_sha), pubsub, rng, keys, members, bad, seen)
        except AssertionError as e:
            raise AssertionError(f"scenario {seed}: {e}") from e
        finally:
            await pubsub.aclose()
        await _same_and_cleared(old, new, seeded, keys)
    print(dict(seen))
    assert all(seen[what] > 0 for what in WHAT), seen
