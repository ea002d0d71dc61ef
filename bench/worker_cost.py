"""What one throughput job costs each process: the worker's CPU per job (its own report, as in
bench/run.py), Redis's CPU per job (INFO cpu, user + system, from the worker's start to its
N-th finish) and the commands Redis ran per job (INFO commandstats: the script calls, and the
commands they ran inside), for errands trees and peers, their runs alternating.

    python bench/worker_cost.py --errands-python .venv/bin/python [--src src --src /other/src]
        [--peers taskiq] [--job io] [--n 20000] [--runs 3] [--busy 2] [--by-command]

Each run is bench/run.py's throughput workload (N jobs enqueued, then one worker of concurrency
32 runs them; ``--busy N`` CPU burners beside the worker), against one private redis-server.
``--src`` names the errands sources to measure (a ``git archive`` of another commit, say);
each is run in turn with the peers, run 1 of all of them, then run 2... Standard library only.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import uuid
from pathlib import Path

from run import LIBS, ROOT, Burners, Lib, PrivateRedis, WorkerProc, ensure_venv, resp


def redis_cpu(r: PrivateRedis) -> float:
    """Seconds of CPU the server used so far (user + system)."""
    info = dict(
        line.split(":", 1) for line in resp(r.port, "INFO", "cpu").decode().split() if ":" in line
    )
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def commands(r: PrivateRedis) -> dict[str, int]:
    """Calls of each command so far (INFO's own left out)."""
    text = resp(r.port, "INFO", "commandstats").decode()
    ran = {m[1]: int(m[2]) for m in re.finditer(r"cmdstat_([\w|]+):calls=(\d+)", text)}
    ran.pop("info", None)
    return ran


def one_run(lib: Lib, r: PrivateRedis, job: str, n: int, busy: int) -> dict[str, float]:
    r.flushall()
    q = f"cost-{lib.name}-{uuid.uuid4().hex[:8]}"
    mode = "bulk" if lib.bulk else "gather"
    lib.run("enqueue", r.url, q, "--job", job, "--n", str(n), "--mode", mode)
    before, cpu0 = commands(r), redis_cpu(r)
    with Burners(busy), WorkerProc(lib, r.url, q, job, n) as w:
        w.next(60)  # ready
        out = w.next(60 + n / 50)
        cpu1, after = redis_cpu(r), commands(r)
        try:  # (errands' adapter stops on its own after its result line; taskiq's does not)
            w.proc.wait(3)
        except subprocess.TimeoutExpired:
            w.stop()
    ran = {k: v - before.get(k, 0) for k, v in after.items() if v > before.get(k, 0)}
    return {
        "rate": out["n"] / (out["last_done"] - out["first_start"]),
        "worker_us": out["cpu_s"] / out["n"] * 1e6,
        "redis_us": (cpu1 - cpu0) / n * 1e6,
        **{f"cmd:{k}": v / n for k, v in ran.items()},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--errands-python", default=".venv/bin/python")
    p.add_argument("--src", action="append", help="errands sources (default: this tree's src)")
    p.add_argument("--peers", default="", help="comma-separated peers, e.g. taskiq")
    p.add_argument("--job", default="io", choices=["noop", "io", "sleep"])
    p.add_argument("--n", type=int, default=20_000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--busy", type=int, default=0)
    p.add_argument("--by-command", action="store_true")
    a = p.parse_args()
    py = Path(a.errands_python)
    py = py if py.is_absolute() else ROOT / py
    libs = []
    for src in a.src or [str(ROOT / "src")]:
        lib = Lib("errands", py, f"errands {src}", [], True, True)
        lib.env["PYTHONPATH"] = str(Path(src).resolve())
        libs.append(lib)
    for name, venv, label, extra, bulk, enq in LIBS:
        if name in a.peers.split(","):
            libs.append(Lib(name, ensure_venv(venv), label, extra, bulk, enq))
    runs: dict[str, list[dict[str, float]]] = {lib.label: [] for lib in libs}
    with PrivateRedis() as r:
        for i in range(a.runs):
            for lib in libs:
                got = one_run(lib, r, a.job, a.n, a.busy)
                runs[lib.label].append(got)
                print(
                    f"run {i + 1} {lib.label}: {got['rate']:,.0f} jobs/s, worker "
                    f"{got['worker_us']:.1f} us/job, redis {got['redis_us']:.1f} us/job",
                    flush=True,
                )
    print(f"\n{a.job} jobs, N {a.n}, busy {a.busy}, median of {a.runs}:")
    for label, got in runs.items():
        med = {k: statistics.median(g.get(k, 0.0) for g in got) for k in got[0]}
        cmds = sum(v for k, v in med.items() if k.startswith("cmd:") and k != "cmd:incr")
        fcalls = med.get("cmd:fcall", 0.0)  # (a pool's fetch and ack on Redis 7+)
        calls = med.get("cmd:evalsha", 0.0) + fcalls
        print(
            f"  {label}: {med['rate']:,.0f} jobs/s, worker {med['worker_us']:.1f} us/job, "
            f"redis {med['redis_us']:.1f} us/job, {cmds:.2f} commands per job (the job's "
            f"own INCR left out; script calls {calls:.3f}, FCALL {fcalls:.3f})"
        )
        if a.by_command:
            for k, v in sorted(med.items(), key=lambda kv: -kv[1]):
                if k.startswith("cmd:") and v >= 0.001:
                    print(f"      {k[4:]:<18} {v:.3f} per job")


if __name__ == "__main__":
    main()
