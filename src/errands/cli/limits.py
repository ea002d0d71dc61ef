"""``python -m errands limits show|set|clear``: the limits of job types, and changing them at run
time (every pool applies them within a second; see docs/limits.md)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from ..admin.client import Client
from ..errors import ErrandsError, RedisUnavailableError
from ..limits import compile_limits, describe_limit, limit_to_dict, parse_limit
from ..store.connection import REDIS_ERRORS
from ..store.keyrepair import repair_hint
from ..store.keys import check_job_name
from ..store.served import unserved
from .hints import HINT_ERRORS
from .inputs import unknown_job_type
from .target import BAD_INPUT, Target, add_target_options, refuse

__all__ = ["add_limits_commands"]


def add_limits_commands(sub: Any) -> None:
    """Add the ``limits`` command (with its subcommands) to the CLI's subparsers."""
    common = argparse.ArgumentParser(add_help=False)
    add_target_options(common)
    parser = sub.add_parser("limits", help="show and change the limits of job types")
    commands = parser.add_subparsers(dest="limits_command", required=True)
    show = commands.add_parser("show", parents=[common], help="limits of every job type")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(func=_runner(_show))
    put = commands.add_parser("set", parents=[common], help="replace a job type's limits now")
    put.add_argument("name", help="job name")
    put.add_argument(
        "limits",
        nargs="+",
        help="rate=10/1s, rate=5/1s:partition, concurrency=2, concurrency=1:partition",
    )
    put.set_defaults(func=_runner(_set))
    clear = commands.add_parser("clear", parents=[common], help="back to the limits in code")
    clear.add_argument("name", help="job name")
    clear.set_defaults(func=_runner(_clear))


def _runner(command: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            return asyncio.run(_with_client(command, args))
        except BAD_INPUT as exc:
            return refuse(exc)

    return run


async def _with_client(command: Any, args: argparse.Namespace) -> int:
    target = Target.resolve(args)
    client = target.client()
    try:
        return int(await command(client, args))
    except REDIS_ERRORS as exc:
        raise RedisUnavailableError(f"cannot reach Redis at {target.where}: {exc}") from exc
    finally:
        await client.aclose()


async def _show(client: Client, args: argparse.Namespace) -> int:
    views = await client.limits()
    if args.json:
        data = {
            name: {
                "code": [limit_to_dict(x) for x in v.code],
                "runtime": None if v.runtime is None else [limit_to_dict(x) for x in v.runtime],
            }
            for name, v in views.items()
        }
        print(json.dumps(data, indent=2))
        return 0
    if not views:
        print("no limits")
    for name, v in views.items():
        line = " ".join(map(describe_limit, v.effective)) or "none"
        source = "code" if v.runtime is None else "set at run time"
        print(f"{name}: {line} ({source})")
    return 0


async def _set(client: Client, args: argparse.Namespace) -> int:
    try:
        limits = [parse_limit(text) for text in args.limits]
        compile_limits(limits)  # (too many rate windows)
    except ValueError as exc:
        raise ErrandsError(str(exc)) from None
    unknown = await unknown_job_type(client, args.name)
    if unknown is not None:  # (set ahead of a new job type's deploy, or a typo)
        warning: str | None = f"{unknown}its limits apply once a pool serves it)"
    else:  # (its pools are down, or it was enqueued under a typo)
        warning = await _unserved(client, args.name)
    await client.set_limits(args.name, limits, strict=None)  # (warned here, not logged)
    if warning is not None:
        print(f"errands: warning: {warning}", file=sys.stderr)
    print(f"{args.name}: {' '.join(map(describe_limit, limits))} (pools apply it within a second)")
    return 0


async def _unserved(client: Client, name: str) -> str | None:
    """``limits set``'s warning for a name no running pool serves; a lookup that fails (the
    pools' registry of another type: its key and repair named) is only warned of too."""
    try:
        problem = await unserved(client.redis, client.keys, name, repair_hint)
    except HINT_ERRORS as exc:
        return f"{exc}; the limits are stored all the same"
    return None if problem is None else f"{problem}; its limits apply once a pool serves it"


async def _clear(client: Client, args: argparse.Namespace) -> int:
    """Clearing what is not set is no error (status 0: a script may clear on every deploy), but
    says so, and a name that looks like a typo is named on stderr, as ``limits set`` does."""
    views = await client.limits()
    view = views.get(check_job_name(args.name))
    if view is not None and view.runtime is not None:
        await client.set_limits(args.name, None)
        print(f"{args.name}: back to the limits in code")
        return 0
    unknown = await unknown_job_type(client, args.name)
    if unknown is not None:
        names = ", ".join(n for n, v in views.items() if v.runtime is not None) or "none"
        warning = f"{unknown}nothing to clear; limits set at run time: {names})"
        print(f"errands: warning: {warning}", file=sys.stderr)
    print(f"{args.name}: no limits set at run time, nothing to clear (the limits in code apply)")
    return 0
