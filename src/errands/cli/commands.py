"""``python -m errands worker app.jobs:pool [--concurrency N] [--processes N] [--redis URL]
[--namespace NS] [--burst] [--no-redis-functions]``."""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
from collections.abc import Sequence
from types import FrameType

from redis.exceptions import RedisError

from ..errors import ErrandsError
from .admin import add_admin_commands
from .dashboard import add_dashboard_command
from .limits import add_limits_commands
from .pools import add_pools_commands
from .relay import add_relay_command
from .schedules import add_schedule_commands
from .target import env_url, load_pool
from .worker import add_worker_options, prepare, run_check, run_reloading, worker_argv
from .workflows import add_workflow_commands

__all__ = ["load_pool", "main"]


def _worker(args: argparse.Namespace) -> int:
    args.redis = args.redis or env_url(legacy_only=True)  # the pool's own Redis, unless given
    if args.reload:
        return run_reloading(args)
    if args.processes > 1 and not args.check:
        return _supervise(args)
    from ..store.connection import connect
    from ..worker.runner import run_pool

    pool = load_pool(args.pool)
    if args.redis:
        pool.url, pool._redis, pool._owns_client = args.redis, connect(args.redis), True
    if args.namespace:
        pool.namespace = args.namespace
    if args.concurrency:
        pool.concurrency = args.concurrency
    if args.no_redis_functions:
        pool.redis_functions = False
    if args.check:
        return run_check(pool)
    prepare(pool, args)
    run_pool(pool, burst=args.burst)
    return 0


def _supervise(args: argparse.Namespace) -> int:
    """Start N single-process workers and forward SIGINT/SIGTERM (and SIGTSTP: quiet) to them.
    Each child is in a process group of its own: a Ctrl-C in a terminal (SIGINT to the
    foreground group) reaches this process only, and each child gets it once, forwarded (twice
    would end the grace); so does a Ctrl-Z, which quiets the children (none is suspended)."""
    children = [
        subprocess.Popen(worker_argv(args, 1, i), process_group=0) for i in range(args.processes)
    ]

    def forward(signum: int, _frame: FrameType | None) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGTSTP, forward)
    codes = [child.wait() for child in children]
    return max((_status(code) for code in codes), default=0)


def _status(code: int) -> int:
    """A child's exit status as a shell reports it: killed by signal N (Popen's -N), 128 + N
    (a child killed by ``kill -9`` beside children that exited 0 made the parent exit 0)."""
    return 128 - code if code < 0 else code


def _at_least_one(text: str) -> int:
    """A count flag's value: a whole number >= 1 (``--concurrency -1`` was taken, and ``0``
    quietly ignored)."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, not {text!r}")
    return n


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="errands", description="errands background jobs")
    sub = parser.add_subparsers(dest="command", required=True)
    worker = sub.add_parser("worker", help="run a worker pool")
    worker.add_argument("pool", help="import path of a WorkerPool, e.g. app.jobs:pool")
    worker.add_argument(
        "--concurrency", type=_at_least_one, default=0, help="jobs at a time per process"
    )
    worker.add_argument(
        "--processes", type=_at_least_one, default=1, help="worker processes to start"
    )
    worker.add_argument("--redis", metavar="URL", help="Redis URL (overrides the pool's)")
    worker.add_argument("--namespace", default="", help="namespace (overrides the pool's)")
    worker.add_argument("--burst", action="store_true", help="exit once the queues are empty")
    off = "call the scripts by EVALSHA only (no FUNCTION LOAD, no FCALL)"
    worker.add_argument("--no-redis-functions", action="store_true", help=off)
    add_worker_options(worker)
    worker.set_defaults(func=_worker)
    add_schedule_commands(sub)
    add_admin_commands(sub)
    add_dashboard_command(sub)
    add_relay_command(sub)
    add_workflow_commands(sub)
    add_limits_commands(sub)
    add_pools_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ErrandsError as exc:
        print(f"errands: {exc}", file=sys.stderr)
        return 2
    except RedisError as exc:  # met after the connection's check: OOM, NOPERM, READONLY, lost
        print(f"errands: Redis error ({type(exc).__name__}): {exc}", file=sys.stderr)
        return 1
