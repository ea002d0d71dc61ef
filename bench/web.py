#!/usr/bin/env python3
"""A FastAPI app under load: an endpoint that awaits one enqueue against the same endpoint
without it (bench/web_app.py), one uvicorn process (uvloop, httptools), wrk with 16 and 64
connections, against a private redis-server. Needs ``wrk`` on PATH (``apt-get install wrk``)
and the project venv (fastapi, uvicorn). See bench/README.md.

    .venv/bin/python bench/web.py [--seconds 10] [--runs 3] [--connections 16,64] [--src DIR]
"""

from __future__ import annotations

import argparse
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
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from run import PrivateRedis  # noqa: E402

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_app(redis_url: str, src: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = dict(os.environ, REDIS_URL=redis_url, PYTHONPATH=f"{src}:{BENCH}")
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--connections", default="16,64")
    parser.add_argument(
        "--src", type=Path, default=BENCH.parent / "src", help="the errands tree to measure"
    )
    opts = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("bench/web.py needs wrk on PATH (apt-get install wrk)")
    load = os.getloadavg()[0]
    rows = []
    with PrivateRedis() as redis:
        proc, base = start_app(redis.url, opts.src)
        try:
            for conns in [int(c) for c in opts.connections.split(",")]:
                runs: dict[str, list[dict[str, float]]] = {"plain": [], "enqueue": []}
                wrk(f"{base}/plain?address=a@example.com", conns, 2)  # warm-up
                wrk(f"{base}/enqueue?address=a@example.com", conns, 2)
                for _ in range(opts.runs):  # alternate, so both see the same machine
                    for path in ("plain", "enqueue"):
                        url = f"{base}/{path}?address=a@example.com"
                        runs[path].append(wrk(url, conns, opts.seconds))
                    redis.flushall()
                med = {
                    p: {k: statistics.median(r[k] for r in rs) for k in rs[0]}
                    for p, rs in runs.items()
                }
                rows.append((conns, med))
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(10)
    print(
        f"FastAPI + uvicorn (1 process), wrk -t2, {opts.seconds} s x {opts.runs} runs, "
        f"median; errands from {opts.src}; load average at start {load:.2f}"
    )
    print(
        "| connections | plain req/s | enqueue req/s | ratio "
        "| plain p50/p99 ms | enqueue p50/p99 ms |"
    )
    print("|---|---|---|---|---|---|")
    for conns, med in rows:
        p, e = med["plain"], med["enqueue"]
        print(
            f"| {conns} | {p['rps']:,.0f} | {e['rps']:,.0f} | {e['rps'] / p['rps']:.0%} | "
            f"{p['p50_ms']:.1f} / {p['p99_ms']:.1f} | {e['p50_ms']:.1f} / {e['p99_ms']:.1f} |"
        )


if __name__ == "__main__":
    main()
