"""``python -m errands schedules list|add|enable|disable|delete|run-now``: runtime schedules
(and a view of the ones pools registered in code) from the command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from ..admin.client import Client
from ..errors import RedisUnavailableError, ScheduleNotFoundError
from ..periodic.listing import ScheduleInfo
from ..periodic.store import MISFIRE_POLICIES
from ..store.connection import REDIS_ERRORS
from .inputs import json_args
from .target import BAD_INPUT, Target, add_target_options, refuse

__all__ = ["add_schedule_commands"]

Command = Callable[[Client, argparse.Namespace], Awaitable[int]]
COLUMNS = ("name", "job", "spec", "tz", "source", "on", "prev", "next", "last job", "outcome")


def add_schedule_commands(sub: Any) -> None:
    """Add the ``schedules`` command (with its subcommands) to the CLI's subparsers."""
    common = argparse.ArgumentParser(add_help=False)
    add_target_options(common)
    parser = sub.add_parser("schedules", help="list and manage periodic schedules")
    commands = parser.add_subparsers(dest="schedules_command", required=True)

    listing = commands.add_parser("list", parents=[common], help="every schedule and its state")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(func=_runner(_list))

    add = commands.add_parser("add", parents=[common], help="add or replace a runtime schedule")
    add.add_argument("name", help="schedule name")
    add.add_argument("job", help="job name to enqueue")
    add.add_argument("spec", help="e.g. '*/5 * * * *', '@daily', '@every 1h30m', 'cron.NAME'")
    add.add_argument("--args", default="{}", help="job args as a JSON object")
    add.add_argument("--tz", default="UTC", help="time zone of cron fields (default UTC)")
    add.add_argument("--disabled", action="store_true", help="add it disabled")
    add.add_argument("--misfire", choices=MISFIRE_POLICIES, default="skip")
    add.add_argument("--skip-if-running", action="store_true", help="no overlapping runs")
    add.add_argument("--priority", type=int, default=0, help="job priority (-1000..1000)")
    add.set_defaults(func=_runner(_add))

    for verb, doc in (
        ("enable", "enable a schedule"),
        ("disable", "disable a schedule"),
        ("delete", "delete a schedule and its state"),
        ("run-now", "enqueue one run of a schedule now"),
    ):
        cmd = commands.add_parser(verb, parents=[common], help=doc)
        cmd.add_argument("name", help="schedule name")
        cmd.set_defaults(func=_runner(_by_name))


def _runner(command: Command) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return asyncio.run(_with_client(command, args))
        except ScheduleNotFoundError as exc:
            print(f"errands: {exc}", file=sys.stderr)
            return 1
        except BAD_INPUT as exc:
            return refuse(exc)

    return run


async def _with_client(command: Command, args: argparse.Namespace) -> int:
    target = Target.resolve(args)
    client = target.client()
    try:
        return await command(client, args)
    except REDIS_ERRORS as exc:
        raise RedisUnavailableError(f"cannot reach Redis at {target.where}: {exc}") from exc
    finally:
        await client.aclose()


async def _list(client: Client, args: argparse.Namespace) -> int:
    infos = await client.schedules()
    if args.json:
        print(json.dumps([i.as_dict() for i in infos], indent=2))
    else:
        print(_table([_row(i) for i in infos]) if infos else "no schedules")
    return 0


async def _add(client: Client, args: argparse.Namespace) -> int:
    job_args = json_args(args.args)  # (as enqueue's: NaN refused, big ints not rounded)
    options: dict[str, Any] = {"tz": args.tz, "enabled": not args.disabled}
    options |= {"misfire": args.misfire, "skip_if_running": args.skip_if_running}
    try:
        periodic = await client.add_schedule(
            args.name, args.job, args.spec, job_args, priority=args.priority, **options
        )
    except OverflowError:  # (an interval past what a float holds)
        raise ValueError(f"schedule {args.spec!r}: its interval is too long") from None
    print(f"schedule {periodic.name!r} added: {periodic.job_name} on {periodic.schedule.text!r}")
    return 0


async def _by_name(client: Client, args: argparse.Namespace) -> int:
    verb, name = args.schedules_command, args.name
    if verb == "enable":
        await client.enable_schedule(name)
    elif verb == "disable":
        await client.disable_schedule(name)
    elif verb == "delete":
        if not await client.delete_schedule(name):
            raise ScheduleNotFoundError(f"no schedule named {name!r}")
    else:
        job_id = await client.run_schedule_now(name)
        print(f"schedule {name!r}: job {job_id} enqueued")
        return 0
    print(f"schedule {name!r} {verb}d")
    return 0


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _row(info: ScheduleInfo) -> list[str]:
    return [
        info.name,
        info.job_name,
        info.spec,
        info.tz,
        info.source,
        "corrupt" if info.corrupt else "stale" if info.stale else "yes" if info.enabled else "no",
        _when(info.prev_fire),
        _when(info.next_fire),
        info.last_job_id or "-",
        info.last_outcome or "-",
    ]


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [list(COLUMNS), *rows]) for i in range(len(COLUMNS))]
    lines = [[c.upper() for c in COLUMNS], *rows]
    return "\n".join(
        "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in lines
    )
