"""The dedup soak of issue 20 (``make test-dedup-soak``; marked soak, deselected by default).

20 enqueuers hit 100 keys (20 per mode: until started, until finished, throttle, debounce,
rerun_latest) for ``DEDUP_SOAK_SECONDS`` (default 600) while 3 worker processes run the jobs and
one of them is SIGKILLed (and replaced) every ``DEDUP_SOAK_KILL_EVERY`` seconds (default 15).
Then it quiesces, and the oracle (``soak_oracle.py``) checks every call and every run: never
two live jobs of an until-finished key, at most one accepted enqueue per throttle window, every
job handed a call runs with the latest args, after the last call of a rerun key one job at most
starts, with the last args. The invariant checker must pass on the drained namespace, and every
dedup key must be gone a second after the quiesce (throttle windows: a second after they end).
``DEDUP_SOAK_DIR`` keeps the worker logs, the calls and the runs, and ``report.json``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import signal
import time
from pathlib import Path

import orjson
import pytest
from redis.asyncio import Redis

from errands import Dedup, Enqueuer
from errands.store.devserver import RedisServer
from errands.store.keys import Keys
from tests.support.invariants import check_invariants
from tests.support.procs import Proc, Procs, eventually, wait_ready

from .soak_oracle import Call, check, parse_runs

SECONDS = float(os.environ.get("DEDUP_SOAK_SECONDS", "600"))
KILL_EVERY = float(os.environ.get("DEDUP_SOAK_KILL_EVERY", "15"))
ENQUEUERS, KEYS, WORKERS = 20, 100, 3
WINDOW = 1.0  # the throttle window, seconds
DEBOUNCE_DELAY = 0.3
MODES = {
    "started": Dedup("-"),
    "finished": Dedup("-", until="finished"),
    "throttle": Dedup("-", throttle=WINDOW),
    "debounce": Dedup("-", debounce=True),
    "rerun": Dedup("-", until="finished", rerun_latest=True),
}
NS = "dedupsoak"

pytestmark = [pytest.mark.soak, pytest.mark.timeout(SECONDS + 600)]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = Path(os.environ.get("DEDUP_SOAK_DIR") or tmp_path)
    path.mkdir(parents=True, exist_ok=True)
    return path


async def produce(
    enqueuer: Enqueuer, rng: random.Random, seqs: list[int], calls: list[Call], stop: asyncio.Event
) -> None:
    names = list(MODES)
    while not stop.is_set():
        i = rng.randrange(KEYS)
        mode, key = names[i % len(names)], f"k{i}"
        seqs[0] += 1
        seq = seqs[0]
        dedup = dataclasses.replace(MODES[mode], key=key)
        delay = DEBOUNCE_DELAY if mode == "debounce" else None
        args = {"key": key, "seq": seq, "ms": rng.uniform(20, 400)}
        send = time.time()
        job = await enqueuer.enqueue(mode, args, delay=delay, dedup=dedup)
        ret = time.time()
        assert job is not None and job.dedup is not None
        calls.append(Call(mode, key, seq, send, ret, job.dedup.status, job.id, job.dedup.holder))
        await asyncio.sleep(rng.uniform(0.05, 0.25))


async def test_dedup_soak(workdir: Path) -> None:
    seed = int(os.environ.get("DEDUP_SOAK_SEED") or random.randrange(1 << 30))
    print(f"\n[dedup soak] seed {seed}, {SECONDS:g}s, kill -9 every {KILL_EVERY:g}s")
    rng = random.Random(seed)
    keys = Keys(NS)
    with RedisServer() as server, RedisServer() as oracle_server, Procs(workdir) as procs:
        redis, oracle = Redis.from_url(server.url), Redis.from_url(oracle_server.url)
        env = {
            "ERRANDS_REDIS_URL": server.url,
            "ERRANDS_NAMESPACE": NS,
            "DEDUP_SOAK_ORACLE_URL": oracle_server.url,
        }

        def start() -> Proc:
            return procs.start(["-m", "tests.dedup.soak_app"], env)

        workers = [start() for _ in range(WORKERS)]
        await wait_ready(redis, NS, WORKERS, timeout=60)
        enqueuers = [Enqueuer.from_url(server.url, namespace=NS, strict=None) for _ in range(20)]
        calls: list[Call] = []
        stop = asyncio.Event()
        seqs = [0]
        producers = [
            asyncio.create_task(produce(e, random.Random(rng.random()), seqs, calls, stop))
            for e in enqueuers
        ]
        kills = 0
        began = time.monotonic()
        try:
            while time.monotonic() - began < SECONDS:
                await asyncio.sleep(min(KILL_EVERY, SECONDS - (time.monotonic() - began)))
                if time.monotonic() - began >= SECONDS:
                    break
                victim = rng.choice([w for w in workers if w.poll() is None])
                os.kill(victim.pid, signal.SIGKILL)
                kills += 1
                workers.append(start())
            stop.set()
            await asyncio.gather(*producers)
            quiet_from = time.monotonic()

            async def quiet() -> bool:
                sizes = await asyncio.gather(
                    *(redis.zcard(k(name)) for name in MODES for k in (keys.queue, keys.scheduled))
                )
                running = await redis.hgetall(keys.running)
                return not any(sizes) and not any(int(v) for v in running.values())

            await eventually(quiet, 120, "the soak to quiesce", interval=0.2)
            quiesce_s = time.monotonic() - quiet_from
            await asyncio.sleep(1.0)
            dedup_left = {
                "dedup": await redis.hlen(keys.dedup),
                "dedupjob": await redis.hlen(keys.dedup_of_job),
                "dedupnext": await redis.hlen(keys.dedup_next),
                "dedupreruns": await redis.zcard(keys.dedup_reruns),
            }
            await asyncio.sleep(WINDOW)
            windows = [k async for k in redis.scan_iter(match=keys.prefix + "dedupwin:*")]
            for w in workers:
                if w.poll() is None:
                    w.send(signal.SIGTERM)
            for w in workers:
                await w.wait(30)
            invariants = await check_invariants(redis, NS, drained=True, stopped=True)
            runs = parse_runs(await oracle.lrange(f"dedupsoak:{NS}:runs", 0, -1))
        finally:
            stop.set()
            await asyncio.gather(*(e.aclose() for e in enqueuers))
            await redis.aclose()
            await oracle.aclose()

    violations = check(calls, runs, WINDOW)
    violations += [f"invariant: [{v.check}] {v.detail}" for v in invariants.violations]
    if any(dedup_left.values()):
        violations.append(f"dedup keys left 1 s after the quiesce: {dedup_left}")
    if windows:
        violations.append(f"throttle windows left after their end: {len(windows)}")
    outcomes: dict[str, dict[str, int]] = {}
    for c in calls:
        per = outcomes.setdefault(c.mode, {})
        per[c.status] = per.get(c.status, 0) + 1
    report = {
        "seed": seed,
        "seconds": SECONDS,
        "kills": kills,
        "calls": len(calls),
        "outcomes": outcomes,
        "runs": len(runs),
        "runs_cut_by_kill": sum(1 for r in runs if r.end is None),
        "jobs": len({r.id for r in runs}),
        "quiesce_s": round(quiesce_s, 2),
        "violations": len(violations),
    }
    (workdir / "report.json").write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    (workdir / "calls.jsonl").write_bytes(
        b"\n".join(orjson.dumps(dataclasses.asdict(c)) for c in calls)
    )
    print(f"[dedup soak] {orjson.dumps(report).decode()}")
    assert not violations, "\n".join([f"seed {seed}:", *violations[:50]])
