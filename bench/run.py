#!/usr/bin/env python3
"""Benchmark errands against arq, saq, streaq and taskiq (stdlib only; see bench/README.md).

Starts a private redis-server on a free loopback port, builds one venv per peer under
bench/.venvs/ (lazily), then runs every workload of every library in fresh subprocesses:
bench/libs/<lib>_bench.py, run by that library's python, talks JSON lines on stdout.
"""

import argparse
import contextlib
import datetime
import json
import os
import queue
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import schedstat  # (bench/, beside this file)

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
VENVS = BENCH / ".venvs"

# Peer venvs: pinned versions, plus uvloop; hiredis where the peer uses redis-py (errands does).
PEER_REQS = {
    "arq": ["arq==0.28.0"],  # pulls redis[hiredis]<6
    # saq 0.26.4 imports typing_extensions without declaring it
    "saq": ["saq[redis,hiredis]==0.26.4", "typing_extensions"],
    "streaq": ["streaq==7.2.0"],  # uses coredis, not redis-py
    "taskiq": ["taskiq==0.13.0", "taskiq-redis==1.2.4", "hiredis"],
    "bullmq": ["bullmq==3.4.4"],  # BullMQ for Python (Lua scripts shared with Node's)
}

# name, venv, table label, extra worker args, has bulk enqueue, measure enqueue columns
LIBS = [
    ("errands", None, "errands", [], True, True),
    ("arq", "arq", "arq 0.28 (poll_delay 0.01, tuned)", ["--poll-delay", "0.01"], False, True),
    ("arq-default", "arq", "arq 0.28 (default 0.5 s poll)", ["--poll-delay", "0.5"], False, False),
    ("saq", "saq", "saq 0.26.4", [], False, True),
    ("streaq", "streaq", "streaq 7.2.0", [], True, True),
    ("taskiq", "taskiq", "taskiq 0.13 + taskiq-redis 1.2.4", [], False, True),
    ("bullmq", "bullmq", "bullmq 3.4.4 (Python)", [], True, True),
]

# column key, header, higher is better
COLUMNS = [
    ("enqueue_serial", "enqueue 1/await", True),
    ("enqueue_gather", "enqueue 32 in flight", True),
    ("enqueue_bulk", "bulk enqueue", True),
    ("noop", "no-op jobs", True),
    ("io", "1-I/O jobs", True),
    ("sleep", "10 ms jobs", True),
    ("mem_queued", "B/queued job", False),
    ("mem_finished", "B/finished job", False),
    ("latency_p50_ms", "p50 ms", False),
    ("latency_p99_ms", "p99 ms", False),
]
WORKLOADS = ["enqueue", "noop", "io", "sleep", "latency", "memory"]
SIZES = {  # jobs per workload: full run, --quick
    "enqueue": (5000, 1000),
    "noop": (20000, 2000),
    "io": (20000, 2000),
    "sleep": (2000, 500),
    "latency": (300, 50),
    "memory": (100000, 5000),
}
CONCURRENCY = 32
CPU_US: dict[str, dict[str, float]] = {}  # library -> workload -> worker CPU µs per job (last run)
# library -> workload -> µs per job of the last run: the worker's run-queue wait, Redis' CPU and
# run-queue wait (bench/schedstat.py)
SCHED_US: dict[str, dict[str, tuple[float, float, float]]] = {}
WARMUP = 10  # enqueues before the timer starts; latency samples dropped from the front
LATENCY_POOLS = 4  # worker processes listening on the latency workload's queue, all idle
BURNER = "while True: pass"  # --busy: one CPU-bound process (a Python loop, never yields)
# --busy-placement: where the burners run: "os" (Linux's balancer decides, run by run),
# "apart" (burner i pinned to CPU i), "together" (all pinned to CPU 0); the worker and Redis
# are never pinned (bench/README.md: "Why a busy machine costs errands more than the peers")
BUSY_PLACEMENT = "os"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- private redis-server


def resp(port: int, *args: str) -> bytes:
    """Send one command to the private server, return the first reply line/bulk payload."""
    payload = f"*{len(args)}\r\n" + "".join(f"${len(a.encode())}\r\n{a}\r\n" for a in args)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(payload.encode())
        f = s.makefile("rb")
        line = f.readline().rstrip(b"\r\n")
        if line.startswith(b"-"):
            raise RuntimeError(line.decode())
        if line.startswith(b"$") and line != b"$-1":
            return f.read(int(line[1:]))
        return line


class PrivateRedis:
    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.dir = tempfile.mkdtemp(prefix="errands-bench-redis-")
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "PrivateRedis":
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(100):
            try:
                if resp(self.port, "PING") == b"+PONG":
                    return self
            except OSError:
                time.sleep(0.05)
        self.__exit__()
        raise RuntimeError("private redis-server did not start")

    def __exit__(self, *exc: object) -> None:
        if self.proc and self.proc.poll() is None:
            with contextlib.suppress(OSError, RuntimeError):  # it closes the connection
                resp(self.port, "SHUTDOWN", "NOSAVE")
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def flushall(self) -> None:
        resp(self.port, "FLUSHALL")

    def version(self) -> str:
        info = resp(self.port, "INFO", "server").decode()
        return next(
            ln.split(":", 1)[1] for ln in info.splitlines() if ln.startswith("redis_version")
        )


# ---------------------------------------------------------------- venvs


def ensure_venv(name: str) -> Path:
    """Create bench/.venvs/<name> with the pinned peer + uvloop unless it is already there."""
    venv = VENVS / name
    python = venv / "bin" / "python"
    reqs = [*PEER_REQS[name], "uvloop"]
    marker = venv / "bench-requirements.txt"
    if python.exists() and marker.exists() and marker.read_text().split() == reqs:
        return python
    log(f"[venv] creating {venv} with {' '.join(reqs)}")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *reqs],
        check=True,
    )
    marker.write_text("\n".join(reqs) + "\n")
    return python


# ---------------------------------------------------------------- running adapters


class Lib:
    def __init__(
        self, name: str, python: Path, label: str, extra: list[str], bulk: bool, enqueue: bool
    ) -> None:
        self.name, self.python, self.label, self.extra = name, python, label, extra
        self.bulk, self.enqueue = bulk, enqueue
        self.script = BENCH / "libs" / f"{name.split('-')[0]}_bench.py"
        self.env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        if name == "errands":  # benchmark the working tree, installed or not
            self.env["PYTHONPATH"] = str(ROOT / "src")

    def cmd(self, sub: str, url: str, queue_name: str, *args: str) -> list[str]:
        return [str(self.python), str(self.script), sub, "--url", url, "--queue", queue_name, *args]

    def run(self, sub: str, url: str, queue_name: str, *args: str, timeout: float = 300) -> dict:
        p = subprocess.run(
            self.cmd(sub, url, queue_name, *args),
            env=self.env,
            timeout=timeout,
            capture_output=True,
            text=True,
        )
        lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
        if p.returncode != 0 or not lines:
            raise RuntimeError(f"{self.name} {sub} exited {p.returncode}: {p.stderr[-800:]}")
        return json.loads(lines[-1])


class WorkerProc:
    """A worker subprocess whose JSON lines are read on a thread (``stream``: the worker
    prints one line per stamp job and runs until stopped; its lines go to ``samples``, each
    tagged ``"w": index``)."""

    def __init__(
        self,
        lib: Lib,
        url: str,
        queue_name: str,
        job: str,
        n: int,
        samples: "queue.Queue | None" = None,
        index: int = 0,
    ) -> None:
        self.stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (closed in close())
        args = ["--job", job, "--n", str(n), "--concurrency", str(CONCURRENCY), *lib.extra]
        if samples is not None:
            args.append("--stream")
        self.proc = subprocess.Popen(
            lib.cmd("worker", url, queue_name, *args),
            env=lib.env,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
        )
        self.lines: queue.Queue = queue.Queue()
        self.samples, self.index = samples, index
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            if line.startswith("{"):
                msg = json.loads(line)
                if self.samples is not None and "ms" in msg:
                    self.samples.put({**msg, "w": self.index})
                else:
                    self.lines.put(msg)
        self.lines.put(None)  # EOF

    def stop(self) -> None:
        """SIGTERM (a streaming worker runs until stopped), then kill after 10 s."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def next(self, timeout: float) -> dict:
        try:
            msg = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"worker: no output within {timeout:.0f}s") from None
        if msg is None:
            self.stderr.seek(0)
            raise RuntimeError(f"worker exited {self.proc.wait()}: {self.stderr.read()[-800:]}")
        return msg

    def __enter__(self) -> "WorkerProc":
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        try:  # after the result line adapters stop gracefully; on errors do not wait
            self.proc.wait(0 if exc_type else 15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()


class Burners:
    """``--busy N``: N processes that spin on the CPU, started before the worker of a
    throughput workload and killed after its result line, the same for every library (a
    shared machine, made reproducible)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> "Burners":
        self.procs = [
            subprocess.Popen([sys.executable, "-c", BURNER], stdin=subprocess.DEVNULL)
            for _ in range(self.n)
        ]
        cpus = sorted(os.sched_getaffinity(0))
        for i, p in enumerate(self.procs):
            if BUSY_PLACEMENT == "apart":
                os.sched_setaffinity(p.pid, {cpus[i % len(cpus)]})
            elif BUSY_PLACEMENT == "together":
                os.sched_setaffinity(p.pid, {cpus[0]})
        return self

    def __exit__(self, *exc: object) -> None:
        for p in self.procs:
            p.kill()
            p.wait()


def qname(lib: Lib, workload: str) -> str:
    return f"bench-{lib.name}-{workload}-{uuid.uuid4().hex[:8]}"


def enqueue_rate(lib: Lib, r: PrivateRedis, mode: str, n: int) -> float:
    r.flushall()
    out = lib.run(
        "enqueue",
        r.url,
        qname(lib, mode),
        "--job",
        "noop",
        "--n",
        str(n),
        "--mode",
        mode,
        "--warmup",
        str(WARMUP),
    )
    return out["n"] / out["seconds"]


def throughput(lib: Lib, r: PrivateRedis, job: str, n: int, busy: int = 0) -> float:
    """N jobs pre-enqueued, then one worker runs them (with ``busy`` CPU burners running
    meanwhile): jobs/s from its first start to its N-th finish."""
    r.flushall()
    q = qname(lib, job)
    lib.run(
        "enqueue", r.url, q, "--job", job, "--n", str(n), "--mode", "bulk" if lib.bulk else "gather"
    )
    with Burners(busy) as b, WorkerProc(lib, r.url, q, job, n) as w:
        w.next(60)  # ready
        before = [schedstat.sample(p.pid) for p in (w.proc, r.proc)]  # type: ignore[union-attr]
        with schedstat.Placement([p.pid for p in b.procs]) as burners:
            out = w.next(60 + n / 50)
        after = [schedstat.sample(p.pid) for p in (w.proc, r.proc)]  # type: ignore[union-attr]
    if burners.together is not None:  # (2 cores: together, the worker and Redis have the other)
        log(f"  ({lib.name} {job}: the burners ran on one CPU {burners.together:.0%} of the run)")
    CPU_US.setdefault(lib.name, {})[job] = out["cpu_s"] / out["n"] * 1e6
    worker, redis = (schedstat.per_job_us(b, a, n) for b, a in zip(before, after, strict=True))
    ws, rs = (schedstat.slices_per_job(b, a, n) for b, a in zip(before, after, strict=True))
    if ws is not None and rs is not None:  # (how often each woke: each wake waits for a CPU)
        log(f"  ({lib.name} {job}: timeslices a job: worker {ws:.2f}, Redis {rs:.2f})")
    if worker and redis:  # (the worker's ready line to its result line: about the N jobs)
        SCHED_US.setdefault(lib.name, {})[job] = (worker[1], redis[0], redis[1])
    return out["n"] / (out["last_done"] - out["first_start"])


def used_memory(r: PrivateRedis) -> int:
    info = resp(r.port, "INFO", "memory").decode()
    return int(next(line for line in info.splitlines() if line.startswith("used_memory:"))[12:])


def memory(lib: Lib, r: PrivateRedis, n: int) -> tuple[float, float]:
    """Redis bytes per queued no-op job, and per finished job (what each library keeps of a
    job once it ran: results, history, job hashes), from INFO memory over ``n`` jobs."""
    r.flushall()
    q = qname(lib, "memory")
    before = used_memory(r)
    mode = "bulk" if lib.bulk else "gather"
    lib.run("enqueue", r.url, q, "--job", "noop", "--n", str(n), "--mode", mode, timeout=900)
    queued = used_memory(r)
    with WorkerProc(lib, r.url, q, "noop", n) as w:
        w.next(60)  # ready
        w.next(60 + n / 50)
    time.sleep(1.0)  # let acks and stats land
    finished = used_memory(r)
    return (queued - before) / n, (finished - before) / n


def latency(lib: Lib, r: PrivateRedis, n: int, pause: float) -> tuple[float, float]:
    """Enqueue-to-start latency of paced single enqueues with LATENCY_POOLS worker processes
    idle on the queue (each with CONCURRENCY slots): p50 and p99 over the N jobs."""
    r.flushall()
    q = qname(lib, "latency")
    samples: queue.Queue = queue.Queue()
    workers = [WorkerProc(lib, r.url, q, "stamp", 0, samples, i) for i in range(LATENCY_POOLS)]
    try:
        for w in workers:
            w.next(60)  # ready
        time.sleep(1.0)  # let the pools go idle
        lib.run(
            "enqueue",
            r.url,
            q,
            "--job",
            "stamp",
            "--n",
            str(n + WARMUP),
            "--mode",
            "paced",
            "--pause",
            str(pause),
        )
        got = []
        deadline = time.monotonic() + 60
        while len(got) < n + WARMUP:
            try:
                got.append(samples.get(timeout=max(0.01, deadline - time.monotonic())))
            except queue.Empty:
                raise RuntimeError(f"latency: {len(got)} of {n + WARMUP} jobs started") from None
    finally:
        for w in workers:
            w.stop()
            w.stderr.close()
    got.sort(key=lambda m: m["t"])  # enqueue order; drop the connection warm-up
    by_pool = [sum(1 for m in got[WARMUP:] if m["w"] == i) for i in range(LATENCY_POOLS)]
    log(f"  {lib.name} latency: jobs started per pool {by_pool}")
    lat = sorted(m["ms"] for m in got[WARMUP:])
    return statistics.median(lat), lat[max(0, -(-99 * len(lat) // 100) - 1)]  # nearest rank


def bench_lib(
    lib: Lib, r: PrivateRedis, workloads: list[str], quick: bool, pause: float, busy: int
) -> dict:
    size = {k: v[1] if quick else v[0] for k, v in SIZES.items()}
    res: dict = {}
    steps = []
    if "enqueue" in workloads and lib.enqueue:
        steps += [
            ("enqueue_serial", lambda: enqueue_rate(lib, r, "serial", size["enqueue"])),
            ("enqueue_gather", lambda: enqueue_rate(lib, r, "gather", size["enqueue"])),
        ]
        if lib.bulk:
            steps.append(("enqueue_bulk", lambda: enqueue_rate(lib, r, "bulk", size["enqueue"])))
    if "noop" in workloads:
        steps.append(("noop", lambda: throughput(lib, r, "noop", size["noop"], busy)))
    if "io" in workloads:
        steps.append(("io", lambda: throughput(lib, r, "io", size["io"], busy)))
    if "sleep" in workloads:
        steps.append(("sleep", lambda: throughput(lib, r, "sleep", size["sleep"], busy)))
    if "latency" in workloads:
        steps.append(("latency", lambda: latency(lib, r, size["latency"], pause)))
    if "memory" in workloads:
        steps.append(("memory", lambda: memory(lib, r, size["memory"])))
    for key, fn in steps:
        try:
            value = fn()
        except Exception as e:  # record and carry on with the next workload
            log(f"  {lib.name} {key}: ERROR {e}")
            res.setdefault("errors", {})[key] = str(e)
            continue
        if key == "latency":
            res["latency_p50_ms"], res["latency_p99_ms"] = value
            log(f"  {lib.name} latency: p50 {value[0]:.2f} ms, p99 {value[1]:.2f} ms")
        elif key == "memory":
            res["mem_queued"], res["mem_finished"] = value
            log(f"  {lib.name} memory: {value[0]:,.0f} B/queued job, {value[1]:,.0f} B/finished")
        else:
            res[key] = value
            log(f"  {lib.name} {key}: {value:,.0f}/s")
            if key in CPU_US.get(lib.name, {}):
                res[f"cpu_us_{key}"] = CPU_US[lib.name][key]
            if key in SCHED_US.get(lib.name, {}):
                waits = SCHED_US[lib.name][key]
                res[f"wait_us_{key}"], res[f"rcpu_us_{key}"], res[f"rwait_us_{key}"] = waits
    return res


# ---------------------------------------------------------------- report


def print_sched(results: dict, cpu: list[tuple[str, str]]) -> None:
    """Per job, µs: the worker's run-queue wait, Redis' CPU and run-queue wait (medians)."""
    lines = []
    for r in results.values():
        m = r["metrics"]
        cells = [
            f"{h} {m[f'wait_us_{k}']:,.0f} / {m[f'rcpu_us_{k}']:,.0f} / {m[f'rwait_us_{k}']:,.0f}"
            for k, h in cpu
            if f"wait_us_{k}" in m
        ]
        if cells:
            lines.append(f"  {r['label']:<36} " + "   ".join(cells))
    if lines:
        print("\nper job, µs: worker run-queue wait / Redis CPU / Redis run-queue wait (schedstat)")
        print("\n".join(lines))


def median_metrics(runs: list[dict]) -> dict:
    """Each metric's median over the runs that have it; "ERR" for one no run measured."""
    keys = {key for run in runs for key in run if key != "errors"}
    metrics: dict = {
        key: float(statistics.median(run[key] for run in runs if key in run)) for key in keys
    }
    pair = {
        "latency": ["latency_p50_ms", "latency_p99_ms"],
        "memory": ["mem_queued", "mem_finished"],
    }
    for run in runs:
        for key in run.get("errors", {}):
            for k in pair.get(key, [key]):
                metrics.setdefault(k, "ERR")
    return metrics


def fmt(key: str, v: object) -> str:
    if v is None:
        return "–"  # noqa: RUF001
    if v == "ERR":
        return "ERR"
    return f"{v:.1f}" if key.endswith("_ms") else f"{v:,.0f}"


def table(results: dict) -> str:
    rows = [["library", *(h for _, h, _ in COLUMNS)]]
    for r in results.values():
        rows.append([r["label"], *(fmt(k, r["metrics"].get(k)) for k, _, _ in COLUMNS)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def ratios(results: dict) -> dict:
    """Per column: errands vs the best peer, as a speed-up (> 1 means errands is better)."""
    if "errands" not in results:
        return {}
    mine = results["errands"]["metrics"]
    out = {}
    for key, _, higher in COLUMNS:
        peers = [
            (r["metrics"][key], n)
            for n, r in results.items()
            if n != "errands" and isinstance(r["metrics"].get(key), float)
        ]
        if not peers or not isinstance(mine.get(key), float):
            continue
        best, who = max(peers) if higher else min(peers)
        out[key] = {
            "best_peer": who,
            "best_peer_value": best,
            "errands": mine[key],
            "speedup": mine[key] / best if higher else best / mine[key],
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--only", help="comma-separated library names, e.g. errands or arq,saq")
    ap.add_argument("--skip-peers", action="store_true", help="errands only")
    ap.add_argument("--skip-errands", action="store_true", help="peers only")
    ap.add_argument("--quick", action="store_true", help="small N, for a smoke run")
    ap.add_argument(
        "--runs",
        type=int,
        default=1,
        help="median of K runs (default 1), interleaved: run 1 of every library, then run 2...",
    )
    ap.add_argument(
        "--workloads", default=",".join(WORKLOADS), help="subset of " + ",".join(WORKLOADS)
    )
    ap.add_argument("--pause", type=float, default=0.005, help="gap between latency enqueues (s)")
    ap.add_argument(
        "--busy",
        type=int,
        default=0,
        metavar="N",
        help="N CPU-burning processes during each throughput workload's worker (default 0)",
    )
    ap.add_argument(
        "--busy-placement",
        choices=["os", "apart", "together"],
        default="os",
        help="the burners' CPUs: as Linux places them (default), one per CPU, or all on one",
    )
    ap.add_argument(
        "--errands-python",
        default=".venv/bin/python",
        help="python of the project venv (relative paths: to the repo root)",
    )
    ap.add_argument("--out", default=str(BENCH / "results.json"))
    a = ap.parse_args()
    global BUSY_PLACEMENT
    BUSY_PLACEMENT = a.busy_placement
    for sig in (signal.SIGINT, signal.SIGTERM):  # unwind: stop workers and the redis-server
        signal.signal(sig, signal.default_int_handler)

    names = [n for n, *_ in LIBS]
    if a.only:
        names = [n for n in names if n in a.only.split(",")]
    if a.skip_peers:
        names = [n for n in names if n == "errands"]
    if a.skip_errands:
        names = [n for n in names if n != "errands"]
    workloads = [w for w in a.workloads.split(",") if w in WORKLOADS]

    libs = []
    for name, venv, label, extra, bulk, enq in LIBS:
        if name not in names:
            continue
        if venv is None:
            py = Path(a.errands_python)
            py = py if py.is_absolute() else ROOT / py
        else:
            py = ensure_venv(venv)
        libs.append(Lib(name, py, label, extra, bulk, enq))

    results: dict = {}
    with PrivateRedis() as r:
        meta = {
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "redis": r.version(),
            "python": sys.version.split()[0],
            "cores": os.cpu_count(),
            "loadavg_start": os.getloadavg(),
            "command": " ".join(sys.argv),
            "runs": a.runs,
            "quick": a.quick,
            "concurrency": CONCURRENCY,
            "latency_pause_s": a.pause,
            "busy": a.busy,
            "busy_placement": a.busy_placement,
            "sizes": {k: v[1] if a.quick else v[0] for k, v in SIZES.items()},
        }
        log(f"private redis-server {meta['redis']} on {r.url}")
        versions: dict[str, str] = {}
        for lib in libs:
            try:
                versions[lib.name] = lib.run("version", r.url, "x", timeout=60)["version"]
            except Exception as e:
                log(f"{lib.name}: cannot import ({e}); skipped")
                results[lib.name] = {"label": lib.label, "metrics": {}, "error": str(e)}
        ready = [lib for lib in libs if lib.name in versions]
        runs: dict[str, list[dict]] = {lib.name: [] for lib in ready}
        # interleaved (run 1 of every library, then run 2 of every library, ...): a slow
        # spell of a shared machine falls on one run of several libraries, not all of one's
        for k in range(a.runs):
            for lib in ready:
                log(f"{lib.name} {versions[lib.name]}: run {k + 1}/{a.runs}")
                runs[lib.name].append(bench_lib(lib, r, workloads, a.quick, a.pause, a.busy))
        for lib in ready:
            results[lib.name] = {
                "label": lib.label,
                "version": versions[lib.name],
                "metrics": median_metrics(runs[lib.name]),
                "runs": runs[lib.name],
            }

    meta["loadavg_end"] = os.getloadavg()  # a busy machine makes the figures noisy
    print()
    print(
        f"{meta['date']}  redis {meta['redis']}  python {meta['python']}  "
        f"{meta['cores']} cores  concurrency {CONCURRENCY}  median of {a.runs} run(s)"
        f"{'  QUICK' if a.quick else ''}{f'  BUSY {a.busy} ({a.busy_placement})' if a.busy else ''}"
        "  (rates in jobs/s)"
    )
    print(table(results))
    cpu = [(k, h) for k, h, _ in COLUMNS if k in ("noop", "io", "sleep")]
    print("\nworker CPU per job, µs (user + system, first start to N-th finish):")
    for r in results.values():
        m = r["metrics"]
        cells = [f"{h} {m[f'cpu_us_{k}']:,.0f}" for k, h in cpu if f"cpu_us_{k}" in m]
        if cells:
            print(f"  {r['label']:<36} " + "   ".join(cells))
    print_sched(results, cpu)
    rat = ratios(results)
    if rat:
        print("\nerrands vs best peer (speed-up; > 1 means errands is better):")
        for key, header, _ in COLUMNS:
            if key in rat:
                x = rat[key]
                print(
                    f"  {header:<22} {x['speedup']:5.2f}x   errands {fmt(key, x['errands'])}"
                    f"  vs {x['best_peer']} {fmt(key, x['best_peer_value'])}"
                )
    Path(a.out).write_text(
        json.dumps({"meta": meta, "results": results, "ratios": rat}, indent=2) + "\n"
    )
    log(f"\nwrote {a.out}")


if __name__ == "__main__":
    main()
