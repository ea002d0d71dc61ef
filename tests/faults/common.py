"""What the fault tests share: the oracle (a separate Redis the worker apps record every job
start and end in), a fleet of worker processes (``python -m tests.faults.app``), checks that
nothing is stuck, and the table of measured figures printed at the end of the run."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis

from errands.store.keys import Keys
from tests.support.invariants import OracleLog, Run, assert_invariants
from tests.support.procs import Proc, Procs, eventually

# Short failure-detection timings for most scenarios (scenario 1 also runs with the defaults).
FAST = {
    "FAULT_HEARTBEAT_INTERVAL": "0.25",
    "FAULT_DEAD_TIMEOUT": "1.5",
    "FAULT_SHUTDOWN_GRACE": "1.0",
}

# scenario -> figures, printed in the terminal summary (see conftest.py)
MEASURED: dict[str, dict[str, Any]] = {}


def report(scenario: str, **figures: Any) -> None:
    """Keep the figures a test measured (and print them, for ``-s`` runs)."""
    MEASURED[scenario] = figures
    shown = ", ".join(f"{k}={_fmt(v)}" for k, v in figures.items())
    print(f"\n[faults] {scenario}: {shown}")


def _fmt(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class Start:
    id: str
    pid: int
    t: float
    run_at: float


@dataclass(frozen=True)
class End:
    id: str
    pid: int
    start: float
    end: float


class Oracle:
    """Reads what the worker apps recorded for one namespace."""

    def __init__(self, url: str, namespace: str) -> None:
        self.redis = Redis.from_url(url)
        self.namespace = namespace

    def key(self, what: str) -> str:
        return f"fault:{self.namespace}:{what}"

    async def lines(self, what: str) -> list[list[str]]:
        return [r.decode().split(" ") for r in await self.redis.lrange(self.key(what), 0, -1)]

    async def count(self, what: str) -> int:
        return int(await self.redis.llen(self.key(what)))

    async def starts(self) -> list[Start]:
        return [Start(i, int(p), float(t), float(r)) for i, p, t, r in await self.lines("starts")]

    async def ends(self) -> list[End]:
        return [End(i, int(p), float(s), float(e)) for i, p, s, e in await self.lines("ends")]

    async def log(self, **options: Any) -> OracleLog:
        """The recorded runs as the invariant checker's oracle (``tests.support.invariants``;
        job names are not recorded here, so caps are not checked from it)."""
        ends = {(e.id, e.pid, e.start): e.end for e in await self.ends()}
        runs = [
            Run(s.id, "", s.pid, s.t, ends.get((s.id, s.pid, s.t))) for s in await self.starts()
        ]
        return OracleLog(runs=runs, **options)

    async def wait_ended(self, ids: Iterable[str], timeout: float) -> float:
        """Wait until every job of ``ids`` has ended at least once; returns when (time.time)."""
        wanted = set(ids)

        async def done() -> bool:
            if await self.count("ends") < len(wanted):
                return False
            return wanted <= {e.id for e in await self.ends()}

        await eventually(done, timeout, f"{len(wanted)} jobs to end", interval=0.1)
        return time.time()

    async def aclose(self) -> None:
        await self.redis.aclose()


def starts_by_id(starts: Iterable[Start]) -> dict[str, list[Start]]:
    out: dict[str, list[Start]] = defaultdict(list)
    for s in starts:
        out[s.id].append(s)
    return out


def first_start_after(starts: list[Start], pid: int, after: float) -> float:
    """Seconds from ``after`` until the process ``pid`` started a job."""
    times = [s.t for s in starts if s.pid == pid and s.t > after]
    assert times, f"pool {pid} started no job after {after}"
    return min(times) - after


def duplicates(starts: Iterable[Start]) -> dict[str, int]:
    """Jobs started more than once -> how many times."""
    counts = Counter(s.id for s in starts)
    return {i: n for i, n in counts.items() if n > 1}


class Fleet:
    """The worker processes of one test. Every one is SIGKILLed at teardown (by ``Procs``)."""

    def __init__(
        self, procs: Procs, redis_url: str, namespace: str, oracle_url: str, **env: str
    ) -> None:
        self.procs = procs
        self.env = {
            "ERRANDS_REDIS_URL": redis_url,
            "ERRANDS_NAMESPACE": namespace,
            "FAULT_ORACLE_URL": oracle_url,
            **env,
        }
        self.keys = Keys(namespace)
        self.workers: list[Proc] = []
        self.killed: dict[int, float] = {}  # pid -> time.time() of the SIGKILL

    def start(self, **env: str) -> Proc:
        proc = self.procs.start(["-m", "tests.faults.app"], env={**self.env, **env})
        self.workers.append(proc)
        return proc

    @property
    def alive(self) -> list[Proc]:
        return [p for p in self.workers if p.poll() is None]

    def kill(self, proc: Proc) -> float:
        """SIGKILL one worker process; returns the time of the kill."""
        at = time.time()
        os.kill(proc.pid, signal.SIGKILL)
        proc.popen.wait(timeout=10)
        self.killed[proc.pid] = at
        return at

    async def pool_ids(self, redis: Redis) -> dict[int, str]:
        """pid -> pool id of the registered pools."""
        ids = [p.decode() for p in await redis.zrange(self.keys.pools, 0, -1)]
        out: dict[int, str] = {}
        for pool_id in ids:
            raw = await redis.get(self.keys.pool_info(pool_id))
            if raw is not None:
                out[int(orjson.loads(raw)["pid"])] = pool_id
        return out

    async def wait_ready(
        self, redis: Redis, procs: Iterable[Proc] | None = None, timeout: float = 20.0
    ) -> dict[int, str]:
        """Wait until every given process (default: all alive) runs a registered pool."""
        pids = {p.pid for p in (procs if procs is not None else self.alive)}

        async def ready() -> dict[int, str] | None:
            for p in self.workers:
                if p.pid in pids and p.poll() is not None:
                    raise AssertionError(f"worker {p.pid} exited:\n{p.output()[-3000:]}")
            ids = await self.pool_ids(redis)
            return ids if pids <= set(ids) else None

        found = await eventually(ready, timeout, f"pools of {sorted(pids)}", interval=0.05)
        assert found is not None
        return found

    def logs(self, tail: int = 1500) -> str:
        return "\n".join(f"--- worker {p.pid}:\n{p.output()[-tail:]}" for p in self.workers)


async def in_progress(redis: Redis, keys: Keys, pool_id: str) -> list[str]:
    """Ids of the jobs in a pool's in-progress set."""
    members = await redis.zrange(keys.in_progress(pool_id), 0, -1)
    return [m.decode().partition(":")[0] for m in members]


async def assert_nothing_stuck(
    redis: Redis, keys: Keys, names: Iterable[str], timeout: float = 10.0
) -> None:
    """Eventually: every queue, scheduled and retry set empty, no job in progress anywhere,
    every concurrency counter back to 0. Then the invariant checker (``tests.support.
    invariants``) on the namespace."""
    names = list(names)

    async def clear() -> list[str]:
        problems = []
        for name in names:
            for key in (keys.queue(name), keys.scheduled(name), keys.retry(name)):
                if n := await redis.zcard(key):
                    problems.append(f"{key}: {n}")
        running = {k.decode(): int(v) for k, v in (await redis.hgetall(keys.running)).items()}
        if any(running.values()):
            problems.append(f"running {running}")
        async for key in redis.scan_iter(match=keys.prefix + "ip:*"):
            problems.append(f"{key.decode()}: {await redis.zcard(key)} in progress")
        return problems

    deadline = time.monotonic() + timeout
    while problems := await clear():
        if time.monotonic() > deadline:
            raise AssertionError(f"stuck after {timeout}s: {problems}")
        await asyncio.sleep(0.1)
    await assert_invariants(redis, keys, drained=True, context="nothing stuck, but:")
