"""Retries: exact backoff schedules (FakeClock), the dead set, snoozing and timeouts."""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from errands import (
    Enqueuer,
    ExponentialBackoff,
    FakeClock,
    FixedBackoff,
    Job,
    LinearBackoff,
    NonRetryableError,
    RetryLater,
    RetryOptions,
    WorkerPool,
)
from errands.backoff import Backoff
from errands.store.keys import Keys


class Env:
    """A pool and an enqueuer on one namespace, driven by one FakeClock."""

    def __init__(self, redis: Redis, namespace: str) -> None:
        self.redis = redis
        self.keys = Keys(namespace)
        self.clock = FakeClock()
        self.pool = WorkerPool(redis, namespace=namespace, clock=self.clock, concurrency=4)
        self.enqueuer = Enqueuer(redis, namespace=namespace, clock=self.clock)
        self.calls: list[dict[str, Any]] = []

    async def retry_score(self, name: str, job_id: str) -> float | None:
        return await self.redis.zscore(self.keys.retry(name), job_id)  # type: ignore[no-any-return]

    async def envelope(self, job_id: str) -> dict[str, Any] | None:
        raw = await self.redis.hget(self.keys.jobs, job_id)
        return None if raw is None else orjson.loads(raw)

    async def error(self, job_id: str) -> dict[str, Any] | None:
        raw = await self.redis.hget(self.keys.errors, job_id)
        return None if raw is None else orjson.loads(raw)

    async def stats(self) -> dict[str, int]:
        raw = await self.redis.hgetall(self.keys.stats)
        return {k.decode(): int(v) for k, v in raw.items()}

    async def is_dead(self, job_id: str) -> bool:
        return await self.redis.zscore(self.keys.dead, job_id) is not None

    async def advance_to(self, due_ms: float) -> None:
        """Move the clock to ``due_ms`` (+1 ms against float rounding) and run what is due."""
        self.clock.set((due_ms + 1) / 1000)
        await self.pool.drain(timeout=5)


@pytest.fixture
def env(redis: Redis, namespace: str) -> Env:
    return Env(redis, namespace)


def ms(seconds: float) -> int:
    return int(seconds * 1000)


def always_failing(env: Env, name: str, **options: Any) -> None:
    @env.pool.job(name, **options)
    async def handler(job: Job) -> None:
        env.calls.append({"fails": job.fails, "attempt": job.attempt, "at": env.clock.now()})
        raise RuntimeError(f"boom {job.attempt}")


async def check_schedule(
    env: Env, name: str, job_id: str, delays: Callable[[int], float], retries: int
) -> None:
    """After each failure the job sits in retry:<name> at now + delays(fails), and does not run
    one millisecond before that."""
    for fails in range(1, retries + 1):
        await env.pool.drain(timeout=5)
        assert len(env.calls) == fails
        now = env.clock.now()
        score = await env.retry_score(name, job_id)
        assert score == ms(now + delays(fails)), f"after fail {fails}"
        env_ = await env.envelope(job_id)
        assert env_ is not None and env_["f"] == fails
        # one ms early: nothing moves
        env.clock.set((score - 1) / 1000)
        await env.pool.drain(timeout=5)
        assert len(env.calls) == fails
        assert await env.retry_score(name, job_id) == score
        env.clock.set(score / 1000 + 0.0005)


# -- schedules -------------------------------------------------------------------------------
async def test_exponential_backoff_schedule_with_seeded_rng(env: Env) -> None:
    always_failing(env, "flaky", max_fails=5, backoff=ExponentialBackoff(rng=random.Random(42)))
    mirror = ExponentialBackoff(rng=random.Random(42))
    expected = {f: mirror.delay(f) for f in range(1, 5)}
    # the curve: fails**4 + 15 + jitter in [0, 30) * (fails + 1)
    for f, d in expected.items():
        assert f**4 + 15 <= d < f**4 + 15 + 30 * (f + 1)
    assert len(set(expected.values())) == 4
    job = await env.enqueuer.enqueue("flaky", {})
    assert job is not None
    async with env.pool:
        await check_schedule(env, "flaky", job.id, expected.__getitem__, 4)
        await env.pool.drain(timeout=5)
    assert [c["attempt"] for c in env.calls] == [1, 2, 3, 4, 5]
    assert await env.is_dead(job.id)


async def test_linear_backoff_30_60_90(env: Env) -> None:
    always_failing(env, "flaky", max_fails=4, backoff=LinearBackoff(30))
    job = await env.enqueuer.enqueue("flaky", {})
    assert job is not None
    start = env.clock.now()
    async with env.pool:
        await check_schedule(env, "flaky", job.id, lambda f: 30 * f, 3)
        await env.pool.drain(timeout=5)
    # attempts at t+0, +30, +30+60, +30+60+90
    assert [round(c["at"] - start, 3) for c in env.calls] == [0, 30, 90, 180]
    assert await env.is_dead(job.id)


async def test_fixed_backoff(env: Env) -> None:
    always_failing(env, "flaky", max_fails=3, backoff=FixedBackoff(12.5))
    job = await env.enqueuer.enqueue("flaky", {})
    assert job is not None
    async with env.pool:
        await check_schedule(env, "flaky", job.id, lambda f: 12.5, 2)
        await env.pool.drain(timeout=5)
    assert len(env.calls) == 3
    assert await env.is_dead(job.id)


async def test_custom_callable_backoff(env: Env) -> None:
    seen: list[int] = []

    def policy(fails: int) -> float:
        seen.append(fails)
        return 7 * fails + 1

    always_failing(env, "flaky", max_fails=3, backoff=policy)
    job = await env.enqueuer.enqueue("flaky", {})
    assert job is not None
    async with env.pool:
        await check_schedule(env, "flaky", job.id, lambda f: 7 * f + 1, 2)
        await env.pool.drain(timeout=5)
    assert seen == [1, 2]
    assert await env.is_dead(job.id)


async def test_custom_backoff_object(env: Env) -> None:
    class Table:
        def delay(self, fails: int) -> float:
            return {1: 3.0, 2: 1000.0}[fails]

    policy: Backoff = Table()
    always_failing(env, "flaky", max_fails=3, backoff=policy)
    job = await env.enqueuer.enqueue("flaky", {})
    assert job is not None
    async with env.pool:
        await check_schedule(env, "flaky", job.id, Table().delay, 2)


async def test_default_backoff_is_exponential(env: Env) -> None:
    always_failing(env, "flaky")
    job = await env.enqueuer.enqueue("flaky", {})
    assert job is not None
    async with env.pool:
        await env.pool.drain(timeout=5)
    score = await env.retry_score("flaky", job.id)
    assert score is not None
    delay = score / 1000 - env.clock.now()
    assert 16 - 0.002 <= delay <= 16 + 60


# -- dead set --------------------------------------------------------------------------------
async def test_dead_after_max_fails_with_error_and_traceback(env: Env) -> None:
    always_failing(env, "flaky", max_fails=3, backoff=FixedBackoff(10))
    job = await env.enqueuer.enqueue("flaky", {"k": "v"})
    assert job is not None
    async with env.pool:
        for _ in range(3):
            await env.pool.drain(timeout=5)
            env.clock.advance(10.001)
        await env.pool.drain(timeout=5)
    assert len(env.calls) == 3
    assert await env.redis.zscore(env.keys.dead, job.id) == ms(env.clock.now() - 10.001)
    assert await env.retry_score("flaky", job.id) is None
    assert await env.redis.zcard(env.keys.queue("flaky")) == 0
    err = await env.error(job.id)
    assert err is not None
    assert err["error"] == "RuntimeError: boom 3"
    assert err["attempt"] == 3
    assert "Traceback (most recent call last)" in err["traceback"]
    assert 'raise RuntimeError(f"boom {job.attempt}")' in err["traceback"]
    assert "RuntimeError: boom 3" in err["traceback"]
    env_ = await env.envelope(job.id)
    assert env_ is not None and env_["f"] == 3 and env_["a"] == {"k": "v"}
    stats = await env.stats()
    assert stats.get("failed") == 2
    assert stats.get("dead") == 1
    assert not stats.get("processed")
    assert await env.redis.hget(env.keys.running, "flaky") == b"0"


async def test_skip_dead_drops_the_job(env: Env) -> None:
    always_failing(env, "flaky", max_fails=2, backoff=FixedBackoff(1), skip_dead=True)
    job = await env.enqueuer.enqueue("flaky", {})
    assert job is not None
    async with env.pool:
        await env.pool.drain(timeout=5)
        assert await env.retry_score("flaky", job.id) is not None
        env.clock.advance(1.001)
        await env.pool.drain(timeout=5)
    assert len(env.calls) == 2
    assert await env.redis.zcard(env.keys.dead) == 0
    assert await env.envelope(job.id) is None
    assert await env.error(job.id) is None
    assert await env.retry_score("flaky", job.id) is None
    stats = await env.stats()  # still counted: as dropped, not dead
    assert stats.get("dropped") == 1 and stats.get("failed") == 1
    assert "dead" not in stats


async def test_the_traceback_kept_is_its_last_8000_characters(env: Env) -> None:
    @env.pool.job("verbose", max_fails=1)
    async def verbose(job: Job) -> None:
        raise RuntimeError("x" * 20_000 + "END")

    job = await env.enqueuer.enqueue("verbose", {})
    assert job is not None
    async with env.pool:
        await env.pool.drain(timeout=5)
    err = await env.error(job.id)
    assert err is not None
    assert len(err["traceback"]) == 8000
    assert err["traceback"].endswith("x" * 7000 + "END\n")  # the end of it, not the start


async def test_non_retryable_error_goes_straight_to_dead(env: Env) -> None:
    class Invalid(NonRetryableError):
        pass

    @env.pool.job("strict", max_fails=10, backoff=FixedBackoff(1))
    async def strict(job: Job) -> None:
        env.calls.append({})
        if job.args["sub"]:
            raise Invalid("bad input")
        raise NonRetryableError("never again")

    a = await env.enqueuer.enqueue("strict", {"sub": False})
    b = await env.enqueuer.enqueue("strict", {"sub": True})
    assert a is not None and b is not None
    async with env.pool:
        await env.pool.drain(timeout=5)
    assert len(env.calls) == 2
    assert await env.is_dead(a.id) and await env.is_dead(b.id)
    assert await env.redis.zcard(env.keys.retry("strict")) == 0
    err_a, err_b = await env.error(a.id), await env.error(b.id)
    assert err_a is not None and err_a["error"] == "NonRetryableError: never again"
    assert err_b is not None and err_b["error"] == "Invalid: bad input"
    assert err_a["attempt"] == 1
    assert (await env.envelope(a.id) or {}).get("f") == 1


async def test_success_after_failure_cleans_up(env: Env) -> None:
    @env.pool.job("flaky", backoff=FixedBackoff(5))
    async def flaky(job: Job) -> None:
        env.calls.append({})
        if job.fails < 2:
            raise RuntimeError("not yet")

    job = await env.enqueuer.enqueue("flaky", {})
    assert job is not None
    async with env.pool:
        for _ in range(3):
            await env.pool.drain(timeout=5)
            env.clock.advance(5)
    assert len(env.calls) == 3
    assert await env.envelope(job.id) is None
    assert await env.error(job.id) is None, "the last error of a finished job must not leak"
    assert await env.redis.zcard(env.keys.dead) == 0
    stats = await env.stats()
    assert stats.get("failed") == 2 and stats.get("processed") == 1


# -- snoozing --------------------------------------------------------------------------------
async def test_retry_later_reschedules_without_counting_a_failure(env: Env) -> None:
    @env.pool.job("poll", max_fails=1)
    async def poll(job: Job) -> None:
        env.calls.append({"fails": job.fails})
        if len(env.calls) < 3:
            raise RetryLater(30)

    job = await env.enqueuer.enqueue("poll", {})
    assert job is not None
    async with env.pool:
        for n in (1, 2):
            await env.pool.drain(timeout=5)
            assert len(env.calls) == n
            due = await env.redis.zscore(env.keys.scheduled("poll"), job.id)
            assert due == ms(env.clock.now() + 30)
            assert await env.retry_score("poll", job.id) is None
            env_ = await env.envelope(job.id)
            assert env_ is not None and "f" not in env_
            assert await env.error(job.id) is None
            env.clock.advance(29.9)
            await env.pool.drain(timeout=5)
            assert len(env.calls) == n
            env.clock.advance(0.1)
        await env.pool.drain(timeout=5)
    # max_fails=1: a counted failure would have killed it on the first snooze
    assert [c["fails"] for c in env.calls] == [0, 0, 0]
    assert await env.redis.zcard(env.keys.dead) == 0
    assert await env.envelope(job.id) is None
    stats = await env.stats()
    assert "failed" not in stats and "dead" not in stats
    assert stats["processed"] == 1


async def test_retry_later_zero_requeues_at_once(env: Env) -> None:
    @env.pool.job("poll", max_fails=1)
    async def poll(job: Job) -> None:
        env.calls.append({})
        if len(env.calls) < 4:
            raise RetryLater()

    job = await env.enqueuer.enqueue("poll", {})
    assert job is not None
    async with env.pool:
        await env.pool.drain(timeout=5)
    assert len(env.calls) == 4
    assert await env.envelope(job.id) is None


def test_retry_later_rejects_negative_delay() -> None:
    with pytest.raises(ValueError):
        RetryLater(-1)


# -- per-job retry options -------------------------------------------------------------------
async def test_per_job_retry_options_override_job_type(env: Env) -> None:
    always_failing(env, "flaky", max_fails=10, backoff=LinearBackoff(100))
    custom = await env.enqueuer.enqueue(
        "flaky", {"j": 1}, retry=RetryOptions(max_retries=2, backoff=FixedBackoff(7))
    )
    no_retry = await env.enqueuer.enqueue("flaky", {"j": 2}, retry=RetryOptions(max_retries=0))
    only_backoff = await env.enqueuer.enqueue(
        "flaky", {"j": 3}, retry=RetryOptions(backoff=LinearBackoff(3))
    )
    plain = await env.enqueuer.enqueue("flaky", {"j": 4})
    assert custom and no_retry and only_backoff and plain
    async with env.pool:
        await env.pool.drain(timeout=5)
        now = env.clock.now()
        assert await env.retry_score("flaky", custom.id) == ms(now + 7)
        assert await env.is_dead(no_retry.id)
        assert await env.retry_score("flaky", only_backoff.id) == ms(now + 3)
        assert await env.retry_score("flaky", plain.id) == ms(now + 100)

        env.clock.advance(7)
        await env.pool.drain(timeout=5)
        now = env.clock.now()
        assert await env.retry_score("flaky", custom.id) == ms(now + 7)
        # only_backoff failed again at +7 (it was due at +3): LinearBackoff(3) -> 6 s
        assert await env.retry_score("flaky", only_backoff.id) == ms(now + 6)

        env.clock.advance(7)
        await env.pool.drain(timeout=5)
        # max_retries=2 -> 3 attempts, then dead (the job type would allow 10)
        assert await env.is_dead(custom.id)
        err = await env.error(custom.id)
        assert err is not None and err["attempt"] == 3
        assert not await env.is_dead(only_backoff.id)
        assert not await env.is_dead(plain.id)


async def test_per_job_exponential_backoff(env: Env) -> None:
    always_failing(env, "flaky", max_fails=10, backoff=FixedBackoff(1))
    job = await env.enqueuer.enqueue(
        "flaky", {}, retry=RetryOptions(backoff=ExponentialBackoff(base=100, jitter=0))
    )
    assert job is not None
    async with env.pool:
        await env.pool.drain(timeout=5)
    assert await env.retry_score("flaky", job.id) == ms(env.clock.now() + 101)


def test_retry_options_validation() -> None:
    with pytest.raises(ValueError):
        RetryOptions(max_retries=-1)
    with pytest.raises(TypeError):
        RetryOptions(backoff=lambda f: 1.0)  # type: ignore[arg-type]
    assert RetryOptions(max_retries=5).to_dict() == {"max_fails": 6}
    # max_fails counts as @pool.job(max_fails=...) does: max_retries + 1, one or both agreeing
    assert RetryOptions(max_fails=6).max_retries == 5
    assert RetryOptions(max_retries=5, max_fails=6).to_dict() == {"max_fails": 6}
    with pytest.raises(ValueError, match="not both"):
        RetryOptions(max_retries=5, max_fails=5)


# -- timeouts --------------------------------------------------------------------------------
async def test_timeout_fails_a_slow_handler(env: Env) -> None:
    started = asyncio.Event()

    @env.pool.job("slow", timeout=0.05, max_fails=2, backoff=FixedBackoff(1))
    async def slow(job: Job) -> None:
        env.calls.append({})
        started.set()
        await asyncio.sleep(30)

    job = await env.enqueuer.enqueue("slow", {})
    assert job is not None
    async with env.pool:
        async with asyncio.timeout(5):
            await env.pool.drain()
        err = await env.error(job.id)
        assert err is not None
        assert err["error"] == "TimeoutError: timed out after 0.05s"
        assert await env.retry_score("slow", job.id) == ms(env.clock.now() + 1)
        env.clock.advance(1)
        await env.pool.drain(timeout=5)
    assert len(env.calls) == 2
    assert await env.is_dead(job.id)


async def test_timeout_of_a_sync_handler(env: Env) -> None:
    """A thread cannot be interrupted: the job keeps its slot until the handler really ends.
    Then the thread's outcome counts: an error fails the job, a return value finishes it (its
    work was done: running it again would repeat its side effects)."""
    release = threading.Event()

    @env.pool.job("blocking", timeout=0.05, max_fails=1)
    def blocking(job: Job, fail: bool) -> str:
        release.wait(5)
        if fail:
            raise RuntimeError("failed after its timeout")
        return "late but done"

    bad = await env.enqueuer.enqueue("blocking", {"fail": True})
    good = await env.enqueuer.enqueue("blocking", {"fail": False})
    assert bad is not None and good is not None
    try:
        async with env.pool:
            asyncio.get_running_loop().call_later(0.5, release.set)
            began = time.monotonic()
            await env.pool.drain(timeout=5)
            assert time.monotonic() - began >= 0.4
    finally:
        release.set()
    err = await env.error(bad.id)
    assert err is not None and "failed after its timeout" in err["error"]
    assert await env.is_dead(bad.id)
    assert await good.result(timeout=2) == "late but done"


async def test_handlers_own_timeout_error_is_reported_as_itself(env: Env) -> None:
    @env.pool.job("own", timeout=10, max_fails=1)
    async def own(job: Job) -> None:
        raise TimeoutError("upstream API did not answer")

    @env.pool.job("inner", timeout=10, max_fails=1)
    async def inner(job: Job) -> None:
        async with asyncio.timeout(0.01):
            await asyncio.sleep(5)

    @env.pool.job("untimed", max_fails=1)
    async def untimed(job: Job) -> None:
        raise TimeoutError("socket read")

    a = await env.enqueuer.enqueue("own", {})
    b = await env.enqueuer.enqueue("inner", {})
    c = await env.enqueuer.enqueue("untimed", {})
    assert a and b and c
    async with env.pool:
        await env.pool.drain(timeout=5)
    errors = [await env.error(j.id) for j in (a, b, c)]
    assert (
        errors[0] is not None and errors[0]["error"] == "TimeoutError: upstream API did not answer"
    )
    assert errors[1] is not None and errors[1]["error"].startswith("TimeoutError")
    assert "timed out after" not in errors[1]["error"]
    assert errors[2] is not None and errors[2]["error"] == "TimeoutError: socket read"
    assert [await env.is_dead(j.id) for j in (a, b, c)] == [True, True, True]


# -- failures while failing ------------------------------------------------------------------
@pytest.mark.parametrize(
    "policy",
    [
        lambda fails: {1: 5.0}[fails],  # raises KeyError on the second failure
        lambda fails: 5.0 if fails == 1 else float("nan"),
        lambda fails: 5.0 if fails == 1 else float("inf"),
        lambda fails: 5.0 if fails == 1 else -1.0,
    ],
    ids=["raises", "nan", "infinite", "negative"],
)
async def test_broken_backoff_falls_back_to_default_and_never_strands_the_job(
    env: Env, policy: Callable[[int], float], caplog: pytest.LogCaptureFixture
) -> None:
    always_failing(env, "flaky", max_fails=5, backoff=policy)
    job = await env.enqueuer.enqueue("flaky", {})
    assert job is not None
    async with env.pool:
        await env.pool.drain(timeout=5)
        assert await env.retry_score("flaky", job.id) == ms(env.clock.now() + 5)
        env.clock.advance(5)
        with caplog.at_level(logging.ERROR, logger="errands.worker"):
            await env.pool.drain(timeout=5)
        errors = [
            r.getMessage()
            for r in caplog.records
            if r.levelno == logging.ERROR and "using the default backoff" in r.getMessage()
        ]
        assert len(errors) == 1 and errors[0].startswith(f"flaky {job.id}: backoff ")
        score = await env.retry_score("flaky", job.id)
        assert score is not None, "the job must be retried, not left in the in-progress set"
        delay = score / 1000 - env.clock.now()
        assert 2**4 + 15 - 0.002 <= delay <= 2**4 + 15 + 30 * 3  # the default curve
        assert await env.redis.zcard(env.keys.in_progress(env.pool.id)) == 0
        assert await env.redis.hget(env.keys.running, "flaky") == b"0"


@pytest.mark.parametrize("delay", [1e300, float(2**63)], ids=["1e300", "2**63"])
async def test_a_huge_backoff_delay_is_capped_as_a_snooze_is(env: Env, delay: float) -> None:
    always_failing(env, "patient", max_fails=5, backoff=lambda fails: delay)
    job = await env.enqueuer.enqueue("patient", {})
    assert job is not None
    async with env.pool:
        await env.pool.drain(timeout=5)
        score = await env.retry_score("patient", job.id)
        assert score == ms(env.clock.now() + RetryLater.MAX_DELAY)
        assert await env.redis.zcard(env.keys.in_progress(env.pool.id)) == 0
        assert await env.redis.hget(env.keys.running, "patient") == b"0"


async def test_retry_starts_from_the_stored_job_not_from_handler_mutations(env: Env) -> None:
    """Retries run with the args and meta as enqueued: whatever a handler or middleware did to
    job.args / job.meta (even putting non-JSON objects there) does not leak into the retry."""

    async def tracing(job: Job, next: Any) -> Any:
        job.meta["span"] = object()  # not JSON
        job.args["k"] = 2
        job.args["extra"] = [1, 2]
        return await next()

    env.pool.middleware(tracing)
    always_failing(env, "flaky", max_fails=5)
    job = await env.enqueuer.enqueue("flaky", {"k": 1}, meta={"trace": "t1"})
    assert job is not None
    async with env.pool:
        await env.pool.drain(timeout=5)
        assert await env.redis.zcard(env.keys.in_progress(env.pool.id)) == 0
        assert await env.redis.hget(env.keys.running, "flaky") == b"0"
    assert not await env.is_dead(job.id)
    stored = await env.envelope(job.id)
    assert stored is not None
    assert stored["a"] == {"k": 1} and stored["m"] == {"trace": "t1"} and stored["f"] == 1


async def test_handlers_own_cancelled_error_is_a_failure(env: Env) -> None:
    """A CancelledError escaping the handler while nobody cancelled the job is a failure: the
    job must be retried, not left behind in the in-progress set."""

    @env.pool.job("stray", max_fails=2, backoff=FixedBackoff(3))
    async def stray(job: Job) -> None:
        env.calls.append({})
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.cancel()
        await future  # raises CancelledError, though this task was never cancelled

    job = await env.enqueuer.enqueue("stray", {})
    assert job is not None
    async with env.pool:
        await env.pool.drain(timeout=5)
        assert await env.retry_score("stray", job.id) == ms(env.clock.now() + 3)
        assert await env.redis.zcard(env.keys.in_progress(env.pool.id)) == 0
        assert await env.redis.hget(env.keys.running, "stray") == b"0"
        env.clock.advance(3)
        await env.pool.drain(timeout=5)
    assert len(env.calls) == 2
    assert await env.is_dead(job.id)
    err = await env.error(job.id)
    assert err is not None and err["error"].startswith("CancelledError")
