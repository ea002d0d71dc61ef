"""``python -m errands workflows list|show|cancel``: workflow runs from the command line."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from ..admin.client import Client
from ..errors import RedisUnavailableError
from ..store.connection import REDIS_ERRORS
from .target import BAD_INPUT, Target, add_target_options, refuse

__all__ = ["add_workflow_commands"]

Command = Callable[[Client, argparse.Namespace], Awaitable[int]]


def add_workflow_commands(sub: Any) -> None:
    """Add the ``workflows`` command (list, show, cancel) to the CLI's subparsers."""
    common = argparse.ArgumentParser(add_help=False)
    add_target_options(common)
    parser = sub.add_parser("workflows", help="list, show and cancel workflow runs")
    commands = parser.add_subparsers(dest="workflows_command", required=True)
    listing = commands.add_parser("list", parents=[common], help="runs, newest first")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(func=_runner(_list))
    show = commands.add_parser("show", parents=[common], help="a run and its members")
    show.add_argument("run_id")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(func=_runner(_show))
    cancel = commands.add_parser("cancel", parents=[common], help="cancel a running run")
    cancel.add_argument("run_id")
    cancel.set_defaults(func=_runner(_cancel))


def _runner(command: Command) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return asyncio.run(_with_client(command, args))
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


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


async def _list(client: Client, args: argparse.Namespace) -> int:
    runs = await client.workflows(limit=args.limit)
    if args.json:
        print(json.dumps([r.__dict__ for r in runs], indent=2))
        return 0
    if not runs:
        print("no workflow runs")
        return 0
    rows = [["id", "name", "status", "members", "created", "finished", "failed"]]
    for r in runs:
        times = [_when(r.created), _when(r.finished)]
        rows.append([r.id, r.name, r.status, str(r.size), *times, r.failed_node or ""])
    print(_table(rows))
    return 0


async def _show(client: Client, args: argparse.Namespace) -> int:
    status = await client.workflow(args.run_id).status()
    if args.json:
        nodes = {n: s.__dict__ for n, s in status.nodes.items()}
        print(json.dumps({**status.__dict__, "nodes": nodes}, indent=2, default=repr))
        return 0
    print(f"workflow {status.id} ({status.name}): {status.status}")
    print(f"created {_when(status.created)}, finished {_when(status.finished)}")
    if status.failed_node:
        print(f"failed by {status.failed_node}")
    counts = ", ".join(f"{n} {state}" for state, n in sorted(status.counts().items()))
    print(f"members: {counts or 'none'}")
    rows = [["node", "job", "state", "after"]]
    for node in status.nodes.values():
        after = ", ".join(node.after[:5]) + (
            f" (+{len(node.after) - 5})" if len(node.after) > 5 else ""
        )
        rows.append([node.id, node.name, node.state, after])
    if len(rows) > 1:
        print(_table(rows))
    return 0


async def _cancel(client: Client, args: argparse.Namespace) -> int:
    if await client.workflow(args.run_id).cancel():
        print(f"workflow {args.run_id} cancelled")
        return 0
    print(f"workflow {args.run_id} is not running")
    return 1
