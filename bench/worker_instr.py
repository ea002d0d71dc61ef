"""What a job costs the worker's own process in CPU instructions: one errands worker
(bench/libs/errands_bench.py: a WorkerPool of concurrency 32 on uvloop, as bench/run.py runs
it) under valgrind's callgrind, counted from the moment it is ready until its N-th job finished.
Instructions do not depend on the machine's load (the worker's CPU time on a shared machine
varies 2x between runs), so a change of a few per cent in the worker's hot path (fetching,
decoding, starting, running and acknowledging a job) shows in one run of each side; run to run
they vary by about 1 % (the batch sizes do a little).

The worker starts on an empty queue; once it is ready the count starts and N jobs are enqueued
in bulk, far faster than the worker runs them under valgrind (50x slower than native): its
fetches are full batches, as on a busy queue. About 15 s for 4,000 jobs.

    python bench/worker_instr.py --errands-python .venv/bin/python [--src src --src /old/src]
        [--job noop|io] [--n 4000] [--keep FILE]

Each ``--src`` (default: this repository's src/) is measured in turn. Also printed, for the
counted part: the worker's context switches a job (voluntary: it slept and was woken;
involuntary: preempted) and the script calls a job (the enqueue's included). ``--keep FILE``
keeps callgrind's output (``callgrind_annotate --inclusive=yes FILE.1``: the C functions; the
Python ones show as the interpreter's). Needs valgrind; standard library only.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import subprocess
import tempfile
import uuid
from pathlib import Path

from run import ROOT, PrivateRedis, resp

ADAPTER = ROOT / "bench" / "libs" / "errands_bench.py"


def switches(pid: int) -> tuple[int, int]:
    """The process's voluntary and involuntary context switches so far."""
    got = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key.endswith("ctxt_switches"):
                got[key] = int(value)
    return got["voluntary_ctxt_switches"], got["nonvoluntary_ctxt_switches"]


def callgrind(what: list[str], pid: int) -> None:
    subprocess.run(["callgrind_control", *what, str(pid)], capture_output=True, check=True)


def measure(py: Path, src: str, job: str, n: int, out: str) -> dict[str, float]:
    """Instructions, context switches and script calls a job of one worker run on ``src``."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(Path(src).resolve())
    with PrivateRedis() as r:
        q = f"instr-{uuid.uuid4().hex[:8]}"
        common = ["--url", r.url, "--queue", q, "--job", job, "--n", str(n)]
        cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
        cmd += [f"--callgrind-out-file={out}", str(py), str(ADAPTER), "worker", *common]
        w = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            assert w.stdout is not None
            while not (line := w.stdout.readline()).startswith(b'{"ready"'):
                if not line:
                    raise RuntimeError(f"worker ended before it was ready ({w.wait()})")
            callgrind(["-i", "on"], w.pid)
            before = switches(w.pid)
            enqueue = [str(py), str(ADAPTER), "enqueue", *common, "--mode", "bulk"]
            subprocess.run(enqueue, env=env, check=True, capture_output=True)
            while not (line := w.stdout.readline()).startswith(b"{"):
                if not line:
                    raise RuntimeError(f"worker ended before its result ({w.wait()})")
            after = switches(w.pid)
            callgrind(["-i", "off"], w.pid)
            callgrind(["-d"], w.pid)
            w.wait(120)
        finally:
            if w.poll() is None:
                w.kill()
                w.wait()
        done = json.loads(line)
        stats = resp(r.port, "INFO", "commandstats").decode()
    # EVALSHA and, on Redis 7+, FCALL (a pool's fetch and ack: store/hotcalls.py)
    calls = sum(int(c) for c in re.findall(r"cmdstat_(?:evalsha|fcall):calls=(\d+)", stats))
    return {
        "instructions": total_instructions(out) / n,
        "voluntary": (after[0] - before[0]) / n,
        "involuntary": (after[1] - before[1]) / n,
        "scripts": calls / n,
        "rate": done["n"] / (done["last_done"] - done["first_start"]),
    }


def total_instructions(out: str) -> int:
    """The instructions counted in callgrind's output files (the dump and the exit's part)."""
    total = 0
    for path in glob.glob(out + "*"):
        with open(path) as f:
            for line in f:
                if line.startswith("totals:"):
                    total += int(line.split()[1])
    return total


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--errands-python", default=".venv/bin/python")
    p.add_argument("--src", action="append", help="errands sources (default: this tree's src)")
    p.add_argument("--job", default="noop", choices=["noop", "io"])
    p.add_argument("--n", type=int, default=4000)
    p.add_argument("--keep", help="keep callgrind's output as FILE (FILE.1: the count)")
    a = p.parse_args()
    py = Path(a.errands_python)
    py = py if py.is_absolute() else ROOT / py
    for i, src in enumerate(a.src or [str(ROOT / "src")]):
        with tempfile.TemporaryDirectory() as tmp:
            out = f"{a.keep}.{i}" if a.keep and len(a.src or []) > 1 else a.keep
            got = measure(py, src, a.job, a.n, out or f"{tmp}/callgrind.out")
        print(
            f"{src}: {a.job} {got['instructions']:,.0f} instructions a job; context switches a "
            f"job {got['voluntary']:.3f} voluntary, {got['involuntary']:.3f} involuntary; "
            f"{got['scripts']:.3f} script calls a job ({got['rate']:,.0f} jobs/s under valgrind)",
            flush=True,
        )


if __name__ == "__main__":
    main()
