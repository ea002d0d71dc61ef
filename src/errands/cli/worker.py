"""The worker command's extra options: ``--check`` (health probe), ``--reload`` (restart on code
changes), burst progress lines, ``--log-format json`` and ``--metrics-port``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from ..errors import ErrandsError
from ..logfmt import configure_logging
from ..store.connection import redact_url
from ..worker.outcomes import ended_jobs

if TYPE_CHECKING:
    from ..worker.pool import WorkerPool

__all__ = ["add_worker_options", "prepare", "run_check", "run_reloading", "worker_argv"]

log = logging.getLogger("errands.cli")

SKIP_DIRS = frozenset({"__pycache__", "node_modules", "site-packages", "venv", "env", "build"})


def add_worker_options(worker: argparse.ArgumentParser) -> None:
    add = worker.add_argument
    add("--check", action="store_true", help="exit 0 if Redis answers and a pool heartbeats")
    add("--reload", action="store_true", help="restart the worker when a .py file changes")
    add("--reload-interval", type=float, default=0.5, help=argparse.SUPPRESS)
    add("--progress-interval", type=float, default=5.0, help="seconds between --burst lines")
    add("--log-format", choices=["text", "json"], default=None, help="log line format")
    levels = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
    add("--log-level", type=str.upper, choices=levels, help="root log level (default INFO)")
    add("--metrics-port", type=int, default=0, help="serve Prometheus /metrics on this port")
    add("--metrics-host", default="0.0.0.0", help="address for --metrics-port")


def worker_argv(args: argparse.Namespace, processes: int, index: int = 0) -> list[str]:
    """The command line of a worker process with these options (``--reload`` and ``--check``
    left out); child ``index`` of ``--processes`` serves metrics on ``--metrics-port + index``."""
    cmd = [sys.executable, "-m", "errands", "worker", args.pool, "--processes", str(processes)]
    for flag, value in (
        ("--redis", args.redis),
        ("--namespace", args.namespace),
        ("--concurrency", args.concurrency),
        ("--log-format", args.log_format),
        ("--log-level", args.log_level),
        ("--metrics-port", args.metrics_port + index if args.metrics_port else 0),
    ):
        if value:
            cmd += [flag, str(value)]
    if args.metrics_port:
        cmd += ["--metrics-host", args.metrics_host]
    if args.no_redis_functions:
        cmd.append("--no-redis-functions")
    if args.burst:
        cmd += ["--burst", "--progress-interval", str(args.progress_interval)]
    return cmd


# -- running one worker process --------------------------------------------------------------
def prepare(pool: WorkerPool, args: argparse.Namespace) -> None:
    """Logging, metrics and burst progress for a worker about to run."""
    if args.log_format or args.log_level:
        configure_logging(args.log_format or "text", args.log_level or logging.INFO)
    if args.metrics_port:
        _serve_metrics(pool, args.metrics_host, args.metrics_port)
    if args.burst and args.progress_interval > 0:
        _add_progress(pool, args.progress_interval)


def _serve_metrics(pool: WorkerPool, host: str, port: int) -> None:
    try:
        from ..contrib.prometheus import instrument_pool, start_http_server
    except ImportError as exc:
        raise ErrandsError(
            f"--metrics-port needs prometheus-client: pip install 'errands[prometheus]' ({exc})"
        ) from None
    instrument_pool(pool)
    try:
        start_http_server(port, host)
    except OSError as exc:
        raise ErrandsError(f"cannot serve metrics on {host}:{port}: {exc}") from None
    log.info("metrics on http://%s:%d/metrics", host, port)


def _add_progress(pool: WorkerPool, interval: float) -> None:
    """While a burst drains, log how much is left every ``interval`` seconds, and a summary."""
    tasks: list[asyncio.Task[None]] = []
    began = time.monotonic()

    async def start(_context: dict[str, Any]) -> None:
        tasks.append(asyncio.create_task(_report(pool, interval), name="errands-progress"))

    async def stop(_context: dict[str, Any]) -> None:
        for task in tasks:
            task.cancel()
        done = ended_jobs(pool.worker) if pool.worker is not None else "0 jobs"
        log.info("burst: done, %s in %.1fs", done, time.monotonic() - began)

    pool.on_startup(start)
    pool.on_shutdown(stop)


async def _report(pool: WorkerPool, interval: float) -> None:
    keys, names = pool.keys, sorted(pool.job_types)
    last_done, last_at = 0, time.monotonic()
    while True:
        await asyncio.sleep(interval)
        try:
            async with pool.redis.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.zcard(keys.queue(name))
                sizes = await pipe.execute()
        except Exception as exc:  # progress lines are best effort
            log.warning("burst: cannot read queue sizes: %s", exc)
            continue
        worker = pool.worker
        done = worker.processed if worker is not None else 0
        now = time.monotonic()
        rate = (done - last_done) / max(now - last_at, 1e-9)
        last_done, last_at = done, now
        busiest = sorted(zip(sizes, names, strict=True), reverse=True)[:3]
        detail = ", ".join(f"{name} {n}" for n, name in busiest if n)
        log.info(
            "burst: %d queued%s, %d running, %d done (%.0f/s)",
            sum(sizes),
            f" ({detail})" if detail else "",
            worker.busy if worker is not None else 0,
            done,
            rate,
        )


# -- --check ---------------------------------------------------------------------------------
def run_check(pool: WorkerPool) -> int:
    """0 when Redis answers and at least one pool of the namespace heartbeats, else 1."""
    ok, message = asyncio.run(_check(pool))
    print(message, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


async def _check(pool: WorkerPool) -> tuple[bool, str]:
    where = redact_url(pool.url) if pool.url else "Redis"
    try:
        async with asyncio.timeout(10):
            seconds, micros = await pool.redis.time()
            now_ms = seconds * 1000 + micros // 1000
            since = now_ms - int(pool.dead_timeout * 1000)
            live = await pool.redis.zcount(pool.keys.pools, since, "+inf")
    except Exception as exc:
        return False, f"errands: unhealthy: cannot reach {where}: {exc}"
    finally:
        with contextlib.suppress(Exception):
            await pool.redis.aclose()
    if not live:
        return False, f"errands: unhealthy: no live pool in namespace {pool.namespace!r}"
    return True, f"ok: {live} live pool(s) in namespace {pool.namespace!r}"


# -- --reload --------------------------------------------------------------------------------
def run_reloading(args: argparse.Namespace) -> int:
    """Run the worker as a child process and restart it whenever a ``.py`` file under the
    current directory changes (stat polling, no dependency). SIGINT/SIGTERM stop both."""
    cmd = worker_argv(args, args.processes)
    root = Path.cwd()
    stopping = False

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    seen = snapshot(root)
    child: subprocess.Popen[bytes] | None = _spawn(cmd)
    log.warning("reload: watching %d .py files under %s", len(seen), root)
    while not stopping:
        time.sleep(args.reload_interval)
        current = snapshot(root)
        if current == seen:
            if child is not None and child.poll() is not None:
                log.warning("reload: worker exited with %d; waiting for changes", child.returncode)
                child = None
            continue
        changed = sorted(set(current.items()) ^ set(seen.items()))[0][0]
        log.warning("reload: %s changed; restarting the worker", os.path.relpath(changed, root))
        seen = current
        _stop(child)
        child = _spawn(cmd)
    _stop(child)
    return 0


def snapshot(root: Path) -> dict[str, int]:
    """Modification times of the ``.py`` files under ``root`` (hidden and venv dirs skipped)."""
    return dict(_python_files(root))


def _python_files(root: Path) -> Iterator[tuple[str, int]]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d not in SKIP_DIRS]
        for name in filenames:
            if name.endswith(".py"):
                path = os.path.join(dirpath, name)
                with contextlib.suppress(OSError):
                    yield path, os.stat(path).st_mtime_ns


def _spawn(cmd: list[str]) -> subprocess.Popen[bytes]:
    # its own session: a Ctrl-C in the terminal reaches this process only, which stops the
    # worker with one signal (a second one would cancel its running jobs)
    return subprocess.Popen(cmd, start_new_session=True)


def _stop(child: subprocess.Popen[bytes] | None, grace: float = 10.0) -> None:
    """SIGTERM (graceful), again after ``grace`` (cancel running jobs), then SIGKILL."""
    if child is None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        if child.poll() is not None:
            return
        child.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(wait)
