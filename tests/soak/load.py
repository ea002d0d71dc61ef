"""The load of the soak: a producer enqueuing a seeded mix of job types, and a canceller
cancelling or destroying jobs now and then, both through the producer's proxy."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis

from errands import Client, Dedup, Enqueuer, Workflow
from errands.errors import JobNotFoundError, RedisUnavailableError
from errands.store.connection import REDIS_ERRORS, connect
from errands.store.keys import Keys

from .dedupcheck import DedupCall
from .plan import DEDUP, ITERABLE, PARTITIONED

if TYPE_CHECKING:
    from .driver import SoakConfig

__all__ = [
    "MIX",
    "WF_LINGER",
    "Load",
    "Production",
    "dedup_burst",
    "iterable_args",
    "partition_burst",
    "workflow_graph",
]

# what the producer enqueues: kind -> weight
MIX = {
    "async": 30, "sync": 15, "capped": 12, "serial": 6, "unique": 10, "flaky": 8, "long": 2,
    "batch": 3, "delayed": 5, "partitioned": 8, "workflow": 3, "dedup": 8, "iterable": 3,
}  # fmt: skip

WF_LINGER = 3600.0  # seconds a finished workflow run's keys stay (then they expire)

# a workflow run: node -> (its parents, seconds, failed attempts before it succeeds)
Graph = dict[str, tuple[tuple[str, ...], float, int]]


def partition_burst(rng: random.Random) -> tuple[str, list[tuple[float, int]]]:
    """A partition and its jobs (seconds, failed attempts), enqueued together: 1-8 of them, so
    that a burst meets the partition's rate (4 a second) and its concurrency (1)."""
    part = f"p{rng.randrange(PARTITIONED.partitions)}"
    jobs = [(round(rng.uniform(0.02, 0.3), 3), int(rng.random() < 0.1))
            for _ in range(rng.randint(1, 8))]  # fmt: skip
    return part, jobs


def dedup_burst(rng: random.Random, seq: int) -> list[dict[str, Any]]:
    """The args of 1-4 deduplicated enqueues of one key, sent one after the other (the later
    ones meet the first waiting or running: replaced, rerun queued), numbered from ``seq``:
    0.2-2 s each (long enough for faults to meet some running: with the weight of "dedup" in
    ``MIX`` the keys are busy much of the time), one in ten failing its first attempt (the key
    stays held meanwhile)."""
    key = f"k{rng.randrange(DEDUP.keys)}"
    return [{"key": key, "seq": seq + i, "seconds": round(rng.uniform(0.2, 2.0), 3),
             "fail": int(rng.random() < 0.1)} for i in range(rng.randint(1, 4))]  # fmt: skip


def iterable_args(rng: random.Random) -> dict[str, Any]:
    """An iterable job's items and seconds per item; one in three fails at one of its items on
    its first attempt (-1: never)."""
    items = rng.randint(*ITERABLE.items)
    fail_at = rng.randrange(items) if rng.random() < 1 / 3 else -1
    return {"items": items, "seconds": round(rng.uniform(*ITERABLE.seconds), 3),
            "fail_at": fail_at}  # fmt: skip


def workflow_graph(rng: random.Random) -> Graph:
    """A chain of 2-4 members, or a fan-out of 2-4 members from a root into a sink (fan-in)."""

    def member(*parents: str) -> tuple[tuple[str, ...], float, int]:
        return parents, round(rng.uniform(0.02, 0.3), 3), int(rng.random() < 0.15)

    width = rng.randint(2, 4)
    if rng.random() < 0.5:
        nodes = [f"s{i}" for i in range(width)]
        return {n: member(*nodes[i - 1 : i]) for i, n in enumerate(nodes)}
    graph = {"root": member()}
    parts = [f"f{i}" for i in range(width)]
    graph.update({n: member("root") for n in parts})
    graph["sink"] = member(*parts)
    return graph


@dataclass
class Production:
    acknowledged: list[str] = field(default_factory=list)
    by_kind: Counter[str] = field(default_factory=Counter)
    refused: int = 0  # enqueues that raised (not acknowledged)
    duplicates: int = 0  # enqueue_unique calls that found the lock taken
    destroyed: set[str] = field(default_factory=set)
    cancelled: Counter[str] = field(default_factory=Counter)
    partitions: dict[str, str] = field(default_factory=dict)  # acknowledged id -> partition
    workflows: dict[str, Graph] = field(default_factory=dict)  # run id -> graph (every call)
    workflows_acked: list[str] = field(default_factory=list)  # runs whose enqueue returned
    # deduplicated enqueues, in order (``raised`` until their reply), and the ids they stored:
    # not in ``acknowledged`` (the canceller leaves them alone: every call must run)
    dedup_calls: list[DedupCall] = field(default_factory=list)
    dedup_enqueued: list[str] = field(default_factory=list)
    iterables: list[str] = field(default_factory=list)  # acknowledged iterable jobs


class Load:
    def __init__(self, config: SoakConfig, namespace: str, url: str, made: Production) -> None:
        self.c = config
        self.ns = namespace
        self.url = url
        self.made = made

    async def produce(self, stop: asyncio.Event) -> None:
        rng = random.Random(self.c.seed ^ 0x50AC)
        kinds, weights = list(MIX), list(MIX.values())
        redis = connect(self.url, socket_timeout=self.c.socket_timeout)
        enqueuer = Enqueuer(redis, namespace=self.ns)
        try:
            while not stop.is_set():
                kind = rng.choices(kinds, weights)[0]
                try:
                    await self._enqueue(enqueuer, rng, kind)
                except RedisUnavailableError:
                    self.made.refused += 1
                    await asyncio.sleep(0.2)
                await asyncio.sleep(rng.expovariate(self.c.rate))
        finally:
            await redis.aclose()

    async def _enqueue(self, enqueuer: Enqueuer, rng: random.Random, kind: str) -> None:
        short = round(rng.uniform(0.02, 0.4), 3)
        if kind == "batch":
            items = [("soak_async", {"seconds": round(rng.uniform(0.02, 0.2), 3)})
                     for _ in range(10)]  # fmt: skip
            jobs = await enqueuer.enqueue_many(items)
        elif kind == "unique":
            # half of them wait a while first (the lock is held meanwhile): duplicates happen
            delay = rng.uniform(0.5, 3.0) if rng.random() < 0.5 else None
            job = await enqueuer.enqueue_unique(
                "soak_unique", {"key": rng.randrange(6)}, delay=delay
            )
            if job is None:
                self.made.duplicates += 1
            jobs = [job] if job else []
        elif kind == "partitioned":
            part, burst = partition_burst(rng)
            jobs = await enqueuer.enqueue_many(
                (PARTITIONED.name, {"seconds": sec, "fail": fail}, {"partition": part})
                for sec, fail in burst
            )
            self.made.partitions.update((job.id, part) for job in jobs)
        elif kind == "workflow":
            await self._workflow(enqueuer, rng)
            return
        elif kind == "dedup":
            await self._dedup(enqueuer, rng)
            return
        elif kind == "iterable":
            job = await enqueuer.enqueue(ITERABLE.name, iterable_args(rng))
            jobs = [job] if job else []
            self.made.iterables += [job.id for job in jobs]
        else:
            name, args, options = {
                "async": ("soak_async", {"seconds": short}, {}),
                "sync": ("soak_sync", {"seconds": short}, {}),
                "capped": ("soak_capped", {"seconds": short}, {}),
                "serial": ("soak_serial", {"seconds": short / 2}, {}),
                "flaky": ("soak_flaky", {"fail": rng.choice((1, 2))}, {}),
                "long": ("soak_long", {"seconds": round(rng.uniform(3, 12), 1)}, {}),
                "delayed": ("soak_async", {"seconds": short}, {"delay": rng.uniform(0.5, 5)}),
            }[kind]
            job = await enqueuer.enqueue(name, args, **options)
            jobs = [job] if job else []
        for job in jobs:
            self.made.acknowledged.append(job.id)
        self.made.by_kind[kind] += len(jobs)

    async def _workflow(self, enqueuer: Enqueuer, rng: random.Random) -> None:
        """A run with an id of its own (its enqueue is idempotent), recorded before it is sent:
        a call that raised may have stored it. Its members are not cancelled by the canceller
        (not in ``acknowledged``): every member must run."""
        run_id = f"s{self.c.seed}w{len(self.made.workflows)}"
        graph = self.made.workflows[run_id] = workflow_graph(rng)
        wf = Workflow("soak", id=run_id, linger=WF_LINGER)
        for node, (parents, seconds, fail) in graph.items():
            wf.add("soak_wf", {"seconds": seconds, "fail": fail}, after=parents, id=node)
        wf.on_success("soak_wf", {"seconds": 0.02})
        await enqueuer.enqueue_workflow(wf)
        self.made.workflows_acked.append(run_id)
        self.made.by_kind["workflow"] += 1

    async def _dedup(self, enqueuer: Enqueuer, rng: random.Random) -> None:
        """A burst of calls on one key, each recorded before it is sent (a call that raised may
        have stored or replaced)."""
        calls = self.made.dedup_calls
        for args in dedup_burst(rng, len(calls)):
            at = len(calls)
            calls.append(DedupCall(args["key"], args["seq"], time.time()))
            dedup = Dedup(args["key"], until="finished", rerun_latest=True)
            try:
                job = await enqueuer.enqueue(DEDUP.name, args, dedup=dedup)
            finally:
                calls[at] = replace(calls[at], ret=time.time())
            assert job is not None and job.dedup is not None
            outcome = job.dedup
            calls[at] = replace(calls[at], status=outcome.status, carrier=job.id,
                                holder=outcome.holder)  # fmt: skip
            if outcome.enqueued:
                self.made.dedup_enqueued.append(job.id)
            self.made.by_kind["dedup " + outcome.status] += 1

    async def cancel_some(self, stop: asyncio.Event) -> None:
        """Every few seconds, cancel (or now and then destroy) a job: a recent one, or one
        waiting after a recovery or a failure (long jobs carry check-ins, recovered jobs
        recovery counters: what a cancel or a destroy must clean up)."""
        rng = random.Random(self.c.seed ^ 0xCA7C)
        redis = connect(self.url, socket_timeout=self.c.socket_timeout)
        client = Client(redis, namespace=self.ns)
        k = Keys(self.ns)
        waiting = [k.queue("soak_long"), k.retry("soak_flaky"), k.retry("soak_long")]
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), rng.uniform(2.0, 6.0))
                if stop.is_set():
                    continue
                destroy = rng.random() < 0.3
                try:
                    job_id = await self._pick(rng, redis, waiting)
                    if job_id is None:
                        continue
                    if destroy:
                        self.made.destroyed.add(job_id)  # whatever the outcome: it may be gone
                    outcome = (
                        str(await client.destroy(job_id))
                        if destroy
                        else (await client.cancel(job_id))
                    )
                except (JobNotFoundError, RedisUnavailableError, *REDIS_ERRORS) as exc:
                    outcome = type(exc).__name__
                self.made.cancelled[("destroy " if destroy else "cancel ") + outcome] += 1
        finally:
            await redis.aclose()

    async def _pick(self, rng: random.Random, redis: Redis, waiting: list[str]) -> str | None:
        if rng.random() < 0.5:
            raw = await redis.zrandmember(rng.choice(waiting))
            if raw is not None:
                return str(raw.decode())
        recent = self.made.acknowledged[-30:]
        return rng.choice(recent) if recent else None
