"""Pages of the history inside a millisecond many attempts share: 250 attempts that ended in
the same ms (more than ten pages), of one name and spread over three, paged through 20 at a
time, read directly and by the deep read (bisection to the shared score, then the entries of
each name at it): every attempt on exactly one page, in the order of the plain sort (newest
first: by member, descending, then in the order of the names)."""

from __future__ import annotations

import functools

import orjson
import pytest
from redis.asyncio import Redis

from errands import Client
from errands.admin import history
from errands.admin.paging import PER_PAGE, page_entries
from errands.store.keys import Keys

MS = 1_767_225_600_123
NAMES = ["alpha", "beta", "gamma"]


async def stored(redis: Redis, keys: Keys, names: list[str], n: int) -> list[str]:
    """``n`` attempts ended at ``MS`` (their names in turn), one older and one newer each side;
    the member of each tied one, newest first (by member, descending)."""
    members: dict[str, tuple[str, float]] = {}
    for i in range(n):
        members[f"id{i:04}:1"] = (names[i % len(names)], MS)
    members["older:1"], members["newer:1"] = (names[0], MS - 1), (names[-1], MS + 1)
    async with redis.pipeline(transaction=False) as pipe:
        for member, (name, score) in members.items():
            job_id = member.split(":")[0]
            record = {"id": job_id, "status": "finished", "attempt": 1, "finished": score}
            pipe.sadd(keys.names, name)
            pipe.zadd(keys.history_of(name), {member: score})
            pipe.hset(keys.history_data, member, orjson.dumps(record | {"job": {"n": name}}))
        await pipe.execute()
    return sorted((m.split(":")[0] for m, (_n, s) in members.items() if s == MS), reverse=True)


@pytest.mark.parametrize("deep", [False, True])
@pytest.mark.parametrize("names", [NAMES[:1], NAMES])
async def test_every_attempt_of_a_shared_ms_is_on_exactly_one_page(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch, names: list[str], deep: bool
) -> None:
    if deep:  # (the bisection and the reads at the shared score, even for shallow pages)
        monkeypatch.setattr(history, "page_entries", functools.partial(page_entries, shallow=0))
    keys = Keys(namespace)
    tied = await stored(redis, keys, names, 250)
    expected = ["newer", *tied, "older"]
    async with Client(redis, namespace=namespace) as client:
        seen: list[str] = []
        for number in range(1, 100):
            page = await client.history(number)
            assert page.total == 252 and page.per_page == PER_PAGE
            if not page.items:
                break
            seen += [e.id for e in page.items]
        assert number == 14 and len(seen) == len(set(seen)) == 252
        assert seen == expected
        if len(names) == 1:  # (the listing of the one name reads its set alone)
            ids = [e.id for p in range(1, 14) for e in (await client.history(p, "alpha")).items]
            assert ids == expected
