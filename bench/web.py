#!/usr/bin/env python3
"""A FastAPI app under load: an endpoint that awaits one enqueue against the same endpoint
without it (bench/web_app.py), one uvicorn process (uvloop, httptools), wrk with 16 and 64
connections, against a private redis-server. Needs ``wrk`` on PATH (``apt-get install wrk``)
and the project venv (fastapi, uvicorn). See bench/README.md.

Each configuration of the app is measured in its own uvicorn process: ``freeze`` (as
examples/fastapi_app is written: ``gc.collect(); gc.freeze()`` at the end of the lifespan's
startup), ``default`` (the same app without those lines: CPython's collector untouched) and,
if asked for, ``threshold`` (``freeze`` plus ``gc.set_threshold(10_000, 10, 10)``). After every
wrk run the app reports its garbage collector's work (``GET /gc``): young and full (generation
2) collections, their total time and the longest pause. ``--endpoints plain,enqueue,yield``
adds ``/yield``, which awaits ``asyncio.sleep(0)`` instead of the enqueue (a request that
awaits, with no errands code).

    .venv/bin/python bench/web.py [--seconds 10] [--runs 3] [--connections 16,64]
                                  [--gc default,freeze] [--endpoints plain,enqueue] [--src DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from run import PrivateRedis  # noqa: E402

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_app(redis_url: str, src: Path, mode: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = dict(os.environ, REDIS_URL=redis_url, PYTHONPATH=f"{src}:{BENCH}", WEB_APP_GC=mode)
    cmd = [sys.executable, "-m", "uvicorn", "web_app:app", "--port", str(port)]
    cmd += ["--loop", "uvloop", "--http", "httptools", "--log-level", "warning", "--no-access-log"]
    proc = subprocess.Popen(cmd, env=env, cwd=BENCH)
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            req = urllib.request.Request(f"{base}/plain?address=a", method="POST")
            urllib.request.urlopen(req, timeout=1).read()
            return proc, base
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("uvicorn did not start")


def wrk(url: str, connections: int, seconds: int) -> dict[str, float]:
    script = BENCH / ".wrk-post.lua"
    script.write_text('wrk.method = "POST"\n')
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    script.unlink()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    result = {"rps": rps}
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        result[f"p{pct}_ms"] = float(m.group(1)) * UNITS[m.group(2)] if m else float("nan")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"{errors.group(1)} failed requests:\n{out}")
    return result


def gc_pauses(base: str) -> dict[str, float]:
    with urllib.request.urlopen(f"{base}/gc", timeout=10) as reply:
        pauses: dict[str, float] = json.loads(reply.read())
    return pauses


def measure(
    base: str, conns: int, opts: argparse.Namespace, flush: Callable[[], None]
) -> dict[str, dict[str, float]]:
    """Median over ``opts.runs`` alternating runs of the endpoints (/plain first)."""
    runs: dict[str, list[dict[str, float]]] = {p: [] for p in opts.endpoints.split(",")}
    for path in runs:  # warm-up
        wrk(f"{base}/{path}?address=a@example.com", conns, 2)
    for _ in range(opts.runs):  # alternate, so both see the same machine
        for path in runs:
            gc_pauses(base)
            result = wrk(f"{base}/{path}?address=a@example.com", conns, opts.seconds)
            pauses = gc_pauses(base)
            for key in ("young", "gen2", "total_ms", "max_ms"):
                result[f"gc_{key}"] = pauses[key]
            runs[path].append(result)
        flush()
    return {p: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for p, rs in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--connections", default="16,64")
    parser.add_argument(
        "--gc", default="default,freeze", help="app configurations: default, freeze, threshold"
    )
    parser.add_argument(
        "--endpoints", default="plain,enqueue", help="plain first; then enqueue and/or yield"
    )
    parser.add_argument(
        "--src", type=Path, default=BENCH.parent / "src", help="the errands tree to measure"
    )
    opts = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("bench/web.py needs wrk on PATH (apt-get install wrk)")
    load = os.getloadavg()[0]
    rows = []
    with PrivateRedis() as redis:
        for mode in opts.gc.split(","):
            proc, base = start_app(redis.url, opts.src, mode)
            try:
                for conns in [int(c) for c in opts.connections.split(",")]:
                    rows.append((mode, conns, measure(base, conns, opts, redis.flushall)))
            finally:
                proc.send_signal(signal.SIGINT)
                proc.wait(10)
    print(
        f"FastAPI + uvicorn (1 process), wrk -t2, {opts.seconds} s x {opts.runs} runs, "
        f"median; errands from {opts.src}; load average at start {load:.2f}, "
        f"at end {os.getloadavg()[0]:.2f}"
    )
    print(
        "| gc | connections | endpoint | req/s | share of /plain | p50 / p99 ms "
        "| young / full collections | GC ms (longest pause) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for mode, conns, med in rows:
        plain = med["plain"]["rps"]
        for path, r in med.items():
            print(
                f"| {mode} | {conns} | /{path} | {r['rps']:,.0f} | {r['rps'] / plain:.0%} "
                f"| {r['p50_ms']:.1f} / {r['p99_ms']:.1f} "
                f"| {r['gc_young']:.0f} / {r['gc_gen2']:.0f} "
                f"| {r['gc_total_ms']:.0f} ({r['gc_max_ms']:.1f}) |"
            )


if __name__ == "__main__":
    main()
