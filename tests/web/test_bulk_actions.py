"""Issue 14 item 6: the dashboard's bulk actions on the scheduled and retry sets act once on
each job listed, and corrupt entries (skipped) do not stop them; those of the dead set are the
Client's."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import unquote

import orjson
import pytest
from redis.asyncio import Redis

import errands
from errands import Client, Enqueuer
from errands.errors import RedisUnavailableError
from errands.store.keys import Keys
from errands.web.messages import FLASH_MOST, error_message
from tests.support.dashboard import http, post
from tests.support.invariants import assert_invariants


@pytest.fixture
async def client(redis: Redis, namespace: str) -> AsyncIterator[Client]:
    yield Client(redis, namespace=namespace)
    await assert_invariants(redis, namespace, context="after the test:")


@pytest.mark.parametrize("kind", ["scheduled", "retry"])
async def test_bulk_actions_pass_corrupt_entries_at_the_head(
    redis: Redis, namespace: str, client: Client, kind: str
) -> None:
    keys = Keys(namespace)
    target = keys.scheduled("ok") if kind == "scheduled" else keys.retry("ok")
    enqueuer = Enqueuer(redis, namespace=namespace)
    good = [await enqueuer.enqueue("ok", {"i": i}, delay=7200) for i in range(3)]
    ids = [job.id for job in good if job is not None]
    if kind == "retry":  # (waiting for their retry: as settle leaves them)
        await redis.zrem(keys.scheduled("ok"), *ids)
        await redis.zadd(target, dict.fromkeys(ids, 7_200_000_000_000))
    # 45 corrupt entries due before every good one: the first two pages and more
    await redis.hset(keys.jobs, mapping={f"bad{i}": b"{{{" for i in range(45)})
    await redis.zadd(target, {f"bad{i}": i for i in range(45)})
    async with http(errands.dashboard(client)) as web:
        response = await post(web, f"/{kind}/retry-all")
        assert response.status_code == 303
        assert await redis.zcard(keys.queue("ok")) == 3
        await redis.delete(keys.queue("ok"))
        await redis.zadd(target, dict.fromkeys(ids, 7_200_000_000_000))
        await post(web, f"/{kind}/delete-all")
    assert await redis.zcard(target) == 45  # (corrupt ones are left to the delete of each)
    await redis.delete(target)
    await redis.hdel(keys.jobs, *[f"bad{i}" for i in range(45)], *ids)


class InFlight:
    """Wraps one-job actions of the Client: records the order ids start in and the most
    running at once; raises ``RedisUnavailableError`` for the ids in ``failing``."""

    def __init__(self, failing: frozenset[str] | set[str] = frozenset()) -> None:
        self.failing = failing
        self.started: list[str] = []
        self.running = self.most = 0

    def wrap(self, action: Callable[[str], Awaitable[bool]]) -> Callable[[str], Awaitable[bool]]:
        async def wrapped(job_id: str) -> bool:
            self.started.append(job_id)
            self.running += 1
            self.most = max(self.most, self.running)
            try:
                if job_id in self.failing:
                    raise RedisUnavailableError(f"failed {job_id}")
                return await action(job_id)
            finally:
                self.running -= 1

        return wrapped


async def _scheduled(redis: Redis, namespace: str, n: int, corrupt: int) -> list[str]:
    """``n`` scheduled jobs and ``corrupt`` corrupt entries between them (every 10th listed
    entry); every id, soonest due first."""
    keys = Keys(namespace)
    enqueuer = Enqueuer(redis, namespace=namespace, strict=None)
    jobs = await enqueuer.enqueue_many([("ok", {"i": i}, {"delay": 7200}) for i in range(n)])
    order = [job.id for job in jobs]
    for i in range(corrupt):
        order.insert(10 * i + 9, f"bad-{i}")
    if corrupt:
        await redis.hset(keys.jobs, mapping={f"bad-{i}": b"{{{" for i in range(corrupt)})
    due = 7_200_000_000_000
    await redis.zadd(keys.scheduled("ok"), {job_id: due + i for i, job_id in enumerate(order)})
    return order


async def test_retry_all_over_many_pages_acts_on_each_listed_job_once_several_at_once(
    redis: Redis, namespace: str, client: Client
) -> None:
    """300 scheduled jobs and 30 corrupt entries (17 pages): each good one queued once, window by
    window in the listing's order, several at once (one at a time before); the count exact."""
    keys = Keys(namespace)
    order = await _scheduled(redis, namespace, 300, 30)
    seen = InFlight()
    client.run_scheduled_now = seen.wrap(client.run_scheduled_now)  # type: ignore[method-assign]
    async with http(errands.dashboard(client)) as web:
        response = await post(web, "/api/scheduled/retry-all")
    assert response.status_code == 200 and response.json()["data"] == 300
    good = [job_id for job_id in order if not job_id.startswith("bad-")]
    assert sorted(seen.started) == sorted(good)  # each once, corrupt ones skipped
    window = seen.most
    assert 1 < window <= 64
    for start in range(0, len(good), window):
        assert set(seen.started[start : start + window]) == set(good[start : start + window])
    assert await redis.zcard(keys.queue("ok")) == 300
    assert await redis.zcard(keys.scheduled("ok")) == 30
    await redis.delete(keys.scheduled("ok"), keys.queue("ok"))
    await redis.hdel(keys.jobs, *order)


async def test_an_error_in_one_job_leaves_none_of_the_others_undone(
    redis: Redis, namespace: str, client: Client
) -> None:
    """ "Retry all" and "retry selected" stopped at the first error: the jobs after it stayed."""
    keys = Keys(namespace)
    order = await _scheduled(redis, namespace, 200, 0)
    seen = InFlight({order[20], order[150]})
    client.run_scheduled_now = seen.wrap(client.run_scheduled_now)  # type: ignore[method-assign]
    async with http(errands.dashboard(client)) as web:
        response = await post(web, "/api/scheduled/retry-all")
        assert response.status_code == 400
        # the first error in order, and how many were done (it showed the first error only)
        assert response.json()["error"] == (
            f"Failed {order[20]} (bulk action: 198 of 200 done, 2 failed)"
        )
        assert await redis.zcard(keys.queue("ok")) == 198
        assert await redis.zrange(keys.scheduled("ok"), 0, -1) == [
            order[20].encode(),
            order[150].encode(),
        ]
        await redis.zadd(keys.scheduled("ok"), dict.fromkeys(order[:100], 1))
        await redis.zrem(keys.queue("ok"), *order[:100])
        seen.failing = {order[0]}
        selected = orjson.dumps(order[:100]).decode()
        response = await post(web, "/api/scheduled/bulk", {"verb": "retry", "ids": selected})
        assert response.status_code == 400
    assert await redis.zrange(keys.scheduled("ok"), 0, -1) == [
        order[0].encode(),
        order[150].encode(),
    ]
    assert await redis.zcard(keys.queue("ok")) == 198
    await redis.delete(keys.scheduled("ok"), keys.queue("ok"))
    await redis.hdel(keys.jobs, *order)


async def test_the_flash_message_of_a_partly_failed_bulk_action_says_how_many_were_done(
    redis: Redis, namespace: str, client: Client
) -> None:
    """The HTML form's flash message: the first error, then "299 of 300 done, 1 failed" (only
    the first error was shown)."""
    keys = Keys(namespace)
    order = await _scheduled(redis, namespace, 300, 0)
    seen = InFlight({order[7]})
    client.run_scheduled_now = seen.wrap(client.run_scheduled_now)  # type: ignore[method-assign]
    async with http(errands.dashboard(client)) as web:
        response = await post(web, "/scheduled/retry-all")
    assert response.status_code == 303
    flash = unquote(response.headers["set-cookie"])
    assert f"error|Failed {order[7]} (bulk action: 299 of 300 done, 1 failed)" in flash
    await redis.delete(keys.scheduled("ok"), keys.queue("ok"))
    await redis.hdel(keys.jobs, *order)


def test_a_long_error_is_cut_to_fit_a_flash_message_never_its_notes() -> None:
    exc = RedisUnavailableError("cannot reach Redis at " + "x" * 400)
    exc.add_note("bulk action: 9 of 11 done, 1 failed")
    shown = error_message(exc, FLASH_MOST)
    assert len(shown) == FLASH_MOST
    assert shown.startswith("Cannot reach Redis at xxx")
    assert shown.endswith("xxx... (bulk action: 9 of 11 done, 1 failed)")
    assert error_message(exc) == "Cannot reach Redis at " + "x" * 400 + (
        " (bulk action: 9 of 11 done, 1 failed)"
    )
    assert error_message(ValueError("no notes")) == "No notes"


@pytest.mark.parametrize("path", ["/dead", "/api/dead"])
async def test_the_dead_pages_retry_all_and_delete_all_are_the_clients(
    redis: Redis, namespace: str, client: Client, path: str
) -> None:
    """The Dead page's "retry all" and "delete all" (and /api's) are the Client's
    ``retry_all_dead_jobs`` and ``delete_all_dead_jobs`` (admin/bulk.py's ``each_dead``): a
    member that is no id errands accepts is skipped by the one, removed by the other (a listing
    of the dashboard's own skipped it both ways: it stayed in the set for good)."""
    keys = Keys(namespace)
    others = ["{braces}", "new\nline", "nul\x00", ""]
    await redis.zadd(keys.dead, {m: i for i, m in enumerate(others)})
    async with http(errands.dashboard(client)) as web:
        assert (await post(web, f"{path}/retry-all")).status_code in (200, 303)
        assert await redis.zcard(keys.dead) == len(others)
        response = await post(web, f"{path}/delete-all")
        assert response.status_code in (200, 303)
    if path.startswith("/api"):
        assert orjson.loads(response.content)["data"] == len(others)
    assert await redis.zcard(keys.dead) == 0
