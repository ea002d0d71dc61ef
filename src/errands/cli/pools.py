"""``python -m errands pools quiet|resume <pool id>``: quiet a running pool from anywhere (it
takes no new job while its running ones finish), or resume it; the pool acts at its next
heartbeat (``Client.quiet_pool``, admin/pools.py). Pool ids: ``errands inspect pools``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import orjson

from ..errors import PoolNotFoundError
from ..store.connection import check
from .target import BAD_INPUT, Target, add_target_options, refuse

__all__ = ["add_pools_commands"]


def add_pools_commands(sub: Any) -> None:
    """Add the ``pools`` command (``quiet``, ``resume``) to the CLI's subparsers."""
    parser = sub.add_parser("pools", help="quiet or resume a running worker pool")
    commands = parser.add_subparsers(dest="pools_command", required=True)
    for name, help_ in (
        ("quiet", "the pool takes no new job (its running ones finish) until resumed"),
        ("resume", "the quiet pool takes jobs again"),
    ):
        p = commands.add_parser(name, help=help_)
        p.add_argument("pool_id", help="pool id (errands inspect pools)")
        add_target_options(p)
        p.add_argument("--json", action="store_true", help="machine-readable output")
        p.set_defaults(func=_run, action=name)


def _run(args: argparse.Namespace) -> int:
    target = Target.resolve(args)

    async def main() -> bool:
        client = target.client()
        try:
            await check(client.redis, target.url)
            if args.action == "quiet":
                return await client.quiet_pool(args.pool_id)
            return await client.resume_pool(args.pool_id)
        finally:
            await client.aclose()

    try:
        changed = asyncio.run(main())
    except PoolNotFoundError as exc:
        print(f"errands: {exc}", file=sys.stderr)
        return 1
    except BAD_INPUT as exc:
        return refuse(exc)
    done = "quiet" if args.action == "quiet" else "resumed"
    if args.json:
        print(
            orjson.dumps({"pool": args.pool_id, "action": args.action, "changed": changed}).decode()
        )
    elif changed:
        print(f"pool {args.pool_id}: {args.action} requested (at its next heartbeat)")
    else:
        print(f"pool {args.pool_id}: {done} already (nothing to change)")
    return 0
