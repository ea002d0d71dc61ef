"""Admin calls meeting partitioned jobs in every state (queued, running with a slot, given back,
retrying, scheduled, dead, cancelled, orphaned by a lost fetch reply, on a pool that died): a
random mix of fetches (under a per-partition concurrency changed at run time, 1 or 2), acks,
failures, give-backs, promotions, reaps and admin calls (cancel, destroy, delete, update_job,
reschedule, retry_dead_job), each script call re-sent at random (redis-py after a lost reply),
never starts a job of a partition at or above the concurrency its fetch applies, keeps each
partition's running count equal to its jobs in progress, and leaves nothing behind once every
job ended (no partition waits while it has room)."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Sequence
from typing import Any, cast

import pytest
from redis.asyncio import Redis

from errands import Client, Enqueuer
from errands.errors import JobChangedError
from errands.store.adminscripts import Arg
from errands.store.fetchcall import fetch_skipped
from errands.store.keys import Keys
from errands.store.records import Acked, Fetched, Settle
from errands.store.scripts import Scripts
from tests.support.invariants import assert_invariants

Lost = list[tuple[str, str, str]]  # (pool, job id, token) of a fetch whose reply was lost
PARTS = ["a", "b b", "c:1", "ü", "[x"]  # (odd names: a space, a colon, non-ASCII, a bracket)
ADMIN = ("cancel", "destroy", "delete", "prio", "resched", "retry")


def _resending(scripts: Scripts, rnd: random.Random, lost: Lost) -> None:
    """Script calls of ``scripts`` sent twice at random: the second reply is the one answered;
    the jobs of a fetch whose reply was lost go to ``lost`` (the orphan sweep's to give back)."""
    call = scripts._call

    async def twice(name: str, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        reply = await call(name, keys, args)
        if rnd.random() < 0.3:
            if name == "fetch" and int(reply[0]) == 0:
                token, end = reply[1].decode(), fetch_skipped(reply)[0]
                lost.extend((str(args[0]), reply[i + 1].decode(), token) for i in range(4, end, 5))
            reply = await call(name, keys, args)
        return reply

    scripts._call = twice  # type: ignore[method-assign]


class Fuzz:
    def __init__(
        self, redis: Redis, namespace: str, rnd: random.Random, resend: bool, rate: str = ""
    ) -> None:
        self.redis, self.rnd, self.keys, self.rate = redis, rnd, Keys(namespace), rate
        self.scripts = Scripts(redis, self.keys)
        self.client = Client(redis, namespace=namespace)
        self.held: dict[str, list[Fetched]] = {"A": [], "B": []}
        self.lost: Lost = []
        self.ids: list[str] = []
        if resend:
            _resending(self.scripts, rnd, self.lost)
            _resending(self.client.scripts, rnd, self.lost)

    async def ack(self, pool: str, fs: Sequence[Fetched]) -> None:
        done = [Acked(f.id, "sms", b"null", 1, 0, 1, f.token) for f in fs]
        await self.scripts.ack(pool, done, False, 1, False)

    async def fetch(self, pool: str, batch: int, limit: int) -> list[Fetched]:
        spec = f"c={limit}{self.rate}"
        got = await self.scripts.fetch(pool, 1, batch, [("sms", 0)], specs={"sms": spec})
        assert got is not None
        # a job starts only below the concurrency the fetching pool applies now
        ids = [f.id for f in got]
        of = [p for p in await self.redis.hmget(self.keys.partitions, ids) if p] if ids else []
        runs = await self.redis.hmget(self.keys.partitions_running("sms"), of) if of else []
        assert all(int(r or 0) <= limit for r in runs), (limit, of, runs)
        return got

    async def settle(self, pool: str, f: Fetched) -> None:
        k, mode = self.keys, self.rnd.choice(("retry", "dead", "requeue", "later"))
        target = {"retry": k.retry("sms"), "dead": k.dead, "requeue": k.queue("sms"),
                  "later": k.scheduled("sms")}[mode]  # fmt: skip
        score = f.score if mode == "requeue" else 1
        s = Settle(f.id, "sms", mode, target, 1, 1, token=f.token, score_ms=score, history=False)
        if mode == "requeue" and self.rng_unstart():
            s.unstart, s.unstart_spec = True, f.rate_spec  # (given back unstarted)
        await self.scripts.settle(pool, s)

    def rng_unstart(self) -> bool:
        return bool(self.rate) and self.rnd.random() < 0.5

    async def counted(self) -> dict[str, int]:
        """Partition -> the starts its rate log counts (no record leaves a window of a minute
        while the test runs)."""
        logs = cast(dict[bytes, bytes], await self.redis.hgetall(self.keys.rate_log("sms")))
        return {
            f.decode().partition(":")[2]: int(log[-10:]) - int(log[1:11])
            for f, log in logs.items()
            if b":" in f and len(log) > 11
        }

    async def sweep(self, i: int) -> None:
        """The orphan sweep gives back the job of a lost fetch reply."""
        pool, job_id, token = self.lost.pop(i)
        s = Settle(job_id, "sms", "requeue", self.keys.queue("sms"), 1, 1, token="*" + token,
                   history=False)  # fmt: skip
        await self.scripts.settle(pool, s)

    async def reap(self, pool: str, step: int) -> None:
        """The pool dies: a reaper takes its jobs back; another starts."""
        await self.redis.zadd(self.keys.pools, {pool: 1})
        rows = [(f"{f.id}:sms", f.id, "sms") for f in self.held.pop(pool)]
        await self.scripts.reap(pool, 1000, 10, b"{}", b"{}", rows)
        self.held[f"P{step}"] = []
        await self.scripts.heartbeat(f"P{step}", b"{}", 60_000, mode="register")

    async def admin(self, what: str, job_id: str) -> None:
        c = self.client
        with contextlib.suppress(LookupError, ValueError, JobChangedError):
            if what == "cancel":
                await c.cancel(job_id)
            elif what == "destroy":
                await c.destroy(job_id)
            elif what == "delete":
                await c.delete_queued_job(job_id)
            elif what == "prio":
                await c.update_job(job_id, priority=self.rnd.randint(-5, 5))
            elif what == "resched":
                await c.reschedule(job_id, self.rnd.choice((0, 4e9)))
            else:
                await c.retry_dead_job(job_id)

    async def step(self, step: int) -> None:
        rnd, held = self.rnd, self.held
        pool = rnd.choice(sorted(held))
        op = rnd.random()
        if op < 0.03:
            await self.reap(pool, step)
        elif op < 0.1 and self.lost:
            await self.sweep(rnd.randrange(len(self.lost)))
        elif op < 0.13:  # the retries and the later ones due (not those rescheduled far off)
            await self.scripts.promote(["sms"], 10**12, rnd.randint(1, 8))
        elif op < 0.3:
            held[pool] += await self.fetch(pool, rnd.randint(1, 4), rnd.choice((1, 2)))
        elif op < 0.45 and held[pool]:
            await self.ack(pool, [held[pool].pop(rnd.randrange(len(held[pool])))])
        elif op < 0.6 and held[pool]:
            await self.settle(pool, held[pool].pop(rnd.randrange(len(held[pool]))))
        else:
            await self.admin(rnd.choice(ADMIN), rnd.choice(self.ids))

    async def drain(self) -> None:
        """Every job ends: the waiting ones made due now, each partition served until none is
        left (a partition with room waits for nothing)."""
        for pool, fs in self.held.items():
            await self.ack(pool, fs)
        pool = sorted(self.held)[0]
        for _ in range(100):
            while self.lost:
                await self.sweep(-1)
            for job_id in self.ids:
                with contextlib.suppress(LookupError, ValueError):
                    await self.client.reschedule(job_id, 0)
            got = await self.fetch(pool, 8, 2)
            if not got and not self.lost and not await self.redis.zcard(self.keys.queue("sms")):
                return
            await self.ack(pool, got)
        raise AssertionError("jobs left after 100 rounds")


@pytest.mark.parametrize("resend", [False, True])
@pytest.mark.parametrize("seed", range(4))
async def test_admin_calls_on_partitioned_jobs_keep_the_slots_right(
    redis: Redis, namespace: str, seed: int, resend: bool
) -> None:
    fuzz = Fuzz(redis, namespace, random.Random(seed), resend)
    async with Enqueuer(redis, namespace=namespace, strict=None) as enq:
        for _ in range(24):
            job = await enq.enqueue("sms", {}, partition=fuzz.rnd.choice(PARTS))
            assert job is not None
            fuzz.ids.append(job.id)
    for pool in fuzz.held:
        await fuzz.scripts.heartbeat(pool, b"{}", 60_000, mode="register")
    for step in range(300):
        await fuzz.step(step)
        # (the checker's partitions check: each index entry is of a job on the queue, at its
        # queue score, in its partition; no turn or wait of a name with nothing indexed)
        await assert_invariants(redis, namespace, context=f"step {step}")
        running = await redis.hgetall(fuzz.keys.partitions_running("sms"))
        assert all(int(v) <= 2 for v in running.values()), (step, running)
    await fuzz.drain()
    await assert_invariants(redis, namespace, drained=True)


@pytest.mark.parametrize("resend", [False, True])
@pytest.mark.parametrize("seed", range(3))
async def test_admin_calls_on_rated_partitions_never_pass_the_rate(
    redis: Redis, namespace: str, seed: int, resend: bool
) -> None:
    """The same, under 3 starts a minute per partition too (jobs given back unstarted at
    random): no partition's rate log ever counts more than 3 starts."""
    fuzz = Fuzz(redis, namespace, random.Random(seed), resend, rate=";R=3/60000")
    async with Enqueuer(redis, namespace=namespace, strict=None) as enq:
        for _ in range(24):
            job = await enq.enqueue("sms", {}, partition=fuzz.rnd.choice(PARTS))
            assert job is not None
            fuzz.ids.append(job.id)
    for pool in fuzz.held:
        await fuzz.scripts.heartbeat(pool, b"{}", 60_000, mode="register")
    for step in range(300):
        await fuzz.step(step)
        counted = await fuzz.counted()
        assert all(n <= 3 for n in counted.values()), (step, counted)
    assert 3 in counted.values()  # (the rate was reached)
    await assert_invariants(redis, namespace)
