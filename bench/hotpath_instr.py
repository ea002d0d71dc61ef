"""What the worker's hot path costs Redis in CPU instructions: the fetch.lua and ack.lua calls of
N jobs, counted by valgrind's callgrind on a private redis-server, per job. Instructions do not
depend on the machine's load (the wall clock and Redis' CPU time on a shared machine vary 2x
between runs), so a change of a few per cent in a script shows in one run of each side.

Jobs are enqueued (over ``--partitions P`` partitions, fetched with ``Concurrency(32,
per_partition=True)``, when P > 0; ``--type-limits``: with bench/limits.py's type-wide
``Rate(10000/100ms)`` and ``Concurrency(1000)``, which never bind), the counters are zeroed,
then they are fetched ``--batch`` at a time and each batch is acknowledged with history, as a
pool does with short jobs (as bench/hotpath_cost.py). About 30 s for 6,000 jobs.
``--long-rate N``: also a type-wide ``Rate(10000, per=1 day)``, its log seeded as N fetches of
one job each, spread evenly over the past day, left it (one record per fetch, or one per bucket
of the window when the sources count in buckets: ``RATE_BUCKETS`` in limits/spec.py); N + jobs
must stay below 10,000 (the limit then never binds). ``--functions``: the calls go the worker's
way (store/hotcalls.py's WorkerScripts: on the held connections, FCALL of the scripts' libraries
of Redis Functions, store/fnlib.py), else redis-py's EVALSHA (the same Lua, run whole per call).

    python bench/hotpath_instr.py [--jobs 6000] [--batch 32] [--partitions 1000] [--functions]
                                  [--type-limits] [--long-rate 8000] [--keep FILE]

``--enqueue IDS`` counts instead the one-job ``await enqueuer.enqueue("noop", {}, job_id=...)``
calls of the jobs (one EVALSHA each, a first one not counted): IDS ``random`` (no job_id: 32 hex
digits), ``dotted`` ("order.<n>": an id a workflow member's could be, lua/lib/wfids.lua),
``dotted-runs`` (the same while a workflow run is stored in the namespace). ``--script-only``
counts only what runs inside EVALSHA (callgrind's ``--toggle-collect=evalShaCommand``): not the
reading of the command, the replies, nor the server's cron, whose share grows with the time a
call takes (a few per cent between two runs of the same code).

ERRANDS_SRC names the errands sources to measure (default: this repository's src/);
REDIS_SERVER the redis-server binary (default: the one on PATH; a build with symbols makes
``callgrind_annotate FILE`` of ``--keep FILE`` name Lua's functions too).
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import os
import shutil
import socket
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, os.environ.get("ERRANDS_SRC", str(ROOT / "src")))

from redis.asyncio import Redis  # noqa: E402

from errands import Concurrency, Enqueuer, Rate, Workflow  # noqa: E402
from errands.limits import compile_limits, spec  # noqa: E402
from errands.store.hotcalls import WorkerScripts  # noqa: E402
from errands.store.keys import Keys  # noqa: E402
from errands.store.scripts import Acked, Scripts  # noqa: E402

DAY = 86_400_000


def seeded_log(now: int, fetches: int) -> str:
    """The rate log of a day's window after ``fetches`` fetches of one job, spread evenly over the
    day before ``now``: one record per fetch, or per bucket when the sources have buckets."""
    width = -(-DAY // getattr(spec, "RATE_BUCKETS", DAY))  # (1 ms: a record per fetch)
    records: list[list[int]] = []
    for i in range(fetches):
        t = now - DAY + (i + 1) * DAY // (fetches + 1)
        if records and records[-1][0] // width == t // width:
            records[-1] = [t, i + 1]
        else:
            records.append([t, i + 1])
    return "#0000000000" + "".join(f"{t:013d}{c:010d}" for t, c in records)


def control(what: str, pid: int) -> None:
    quiet = subprocess.DEVNULL
    subprocess.run(["callgrind_control", what, str(pid)], stdout=quiet, stderr=quiet, check=True)


async def connected(port: int) -> Redis:
    """A client of the server on ``port``, once it answers (it starts under valgrind: slowly)."""
    redis = Redis(port=port)
    for _ in range(300):
        try:
            await redis.ping()
            break
        except OSError:
            await asyncio.sleep(0.1)
    return redis


async def drive(
    port: int,
    pid: int,
    jobs: int,
    batch: int,
    parts: int,
    functions: bool,
    typewide: bool,
    long_rate: int,
) -> int:
    redis = await connected(port)
    keys = Keys("b" + uuid.uuid4().hex[:10])
    scripts = WorkerScripts(redis, keys) if functions else Scripts(redis, keys)
    async with Enqueuer(redis, namespace=keys.namespace, strict=None) as enq:
        for start in range(0, jobs, 500):  # (small calls: Redis runs 50x slower under valgrind)
            await enq.enqueue_many(
                [
                    ("noop", {}, {"partition": f"p{i % parts}"} if parts else {})
                    for i in range(start, min(jobs, start + 500))
                ]
            )
    specs = {"noop": "c=32"} if parts else None
    conc = 0
    limits = []
    if typewide:
        limits += [Rate(10_000, per=timedelta(milliseconds=100)), Concurrency(1000)]
    if long_rate:
        limits.append(Rate(10_000, per=timedelta(days=1)))
        secs, micros = await redis.time()
        now_ms = int(secs) * 1000 + int(micros) // 1000
        await redis.hset(keys.rate_log("noop"), str(DAY), seeded_log(now_ms, long_rate))
    if limits:
        conc, typed = compile_limits(limits)
        specs = {"noop": ";".join(s for s in (typed, specs and specs["noop"]) if s)}
    pool = "bench-pool"
    now = await scripts.heartbeat(pool, b"{}", 600_000, "register")
    done = 0
    empty = 0
    size = 1  # (a first job, not counted: the scripts loaded)
    while empty < 50:
        got = await scripts.fetch(
            pool, now, size, [("noop", conc)], specs=specs, dead_timeout_ms=10**9
        )
        if not got:  # (a fetch may spend its budget on drained turns: asked again)
            empty += 1
            if not await redis.zcard(keys.queue("noop")):
                break
            continue
        acked = [Acked(f.id, "noop", b"null", now, 86_400_000, 1, f.token) for f in got]
        await scripts.ack(pool, acked, False, now, True)
        if size == 1:
            control("-z", pid)
            size = batch
        else:
            done += len(got)
    control("-d", pid)
    if isinstance(scripts, WorkerScripts):
        assert scripts.loads == 2 and not scripts.fallbacks, "not on FCALL"
        await scripts.aclose()
    await redis.aclose()
    return done


async def drive_enqueue(port: int, pid: int, jobs: int, ids: str) -> int:
    """One-job enqueues (``--enqueue``), the first not counted."""
    redis = await connected(port)
    async with Enqueuer(redis, namespace="b" + uuid.uuid4().hex[:10], strict=None) as enq:
        if ids == "dotted-runs":
            wf = Workflow("bench")
            wf.add("noop", {}, id="b", after=[wf.add("noop", {}, id="a")])
            await enq.enqueue_workflow(wf)
        for i in range(jobs + 1):
            await enq.enqueue("noop", {}, job_id=None if ids == "random" else f"order.{i}")
            if i == 0:
                control("-z", pid)
    control("-d", pid)
    await redis.aclose()
    return jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=6000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--partitions", type=int, default=0)
    parser.add_argument("--functions", action="store_true", help="FCALL on held connections")
    parser.add_argument("--type-limits", action="store_true", help="type-wide limits, not binding")
    parser.add_argument("--long-rate", type=int, default=0, help="a day's rate, log seeded")
    parser.add_argument("--keep", help="where to copy callgrind's output")
    parser.add_argument("--enqueue", choices=["random", "dotted", "dotted-runs"])
    parser.add_argument("--script-only", action="store_true", help="inside EVALSHA only")
    a = parser.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = f"/tmp/hotpath_instr.{os.getpid()}.out"
    server = os.environ.get("REDIS_SERVER", "redis-server")
    args = ["valgrind", "--tool=callgrind", "--compress-strings=no", f"--callgrind-out-file={out}"]
    if a.script_only:
        args.append("--toggle-collect=evalShaCommand")
    args += [server]  # (names spelled out in every dump: --keep FILE annotates on its own)
    args += ["--port", str(port), "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if a.enqueue:
            run = drive_enqueue(port, proc.pid, a.jobs, a.enqueue)
        else:
            run = drive(
                port, proc.pid, a.jobs, a.batch, a.partitions, a.functions, a.type_limits,
                a.long_rate,
            )  # fmt: skip
        jobs = asyncio.run(run)
    finally:
        proc.terminate()
        proc.wait()
    dumps = sorted(glob.glob(out + ".*"))  # the dump of -d (the end's own is `out`)
    text = Path(dumps[0]).read_text() if dumps else ""
    total = next(int(line.split()[1]) for line in text.splitlines() if line.startswith("summary:"))
    if a.keep:
        shutil.copy(dumps[0], a.keep)
    for f in [*dumps, out]:
        Path(f).unlink(missing_ok=True)
    per_job = total / jobs
    if a.enqueue:
        where = " (inside EVALSHA)" if a.script_only else ""
        print(f"one-job enqueues {jobs} ids {a.enqueue}{where}: {per_job:,.0f} instr. a job")
        return
    how = "FCALL" if a.functions else "EVALSHA"
    limits = " type-wide limits" if a.type_limits else ""
    limits += f" a day's rate, log of {a.long_rate} fetches" if a.long_rate else ""
    print(f"jobs {jobs} batch {a.batch} partitions {a.partitions}{limits} {how}: ", end="")
    print(f"{per_job:,.0f} instr. a job")


if __name__ == "__main__":
    main()
