"""``python -m errands relay --database URL [--redis URL --namespace NS | --app MODULE:ATTR]
[--batch N] [--poll-interval S]``: the outbox relay as a process of its own (needs SQLAlchemy
and the database's asyncio driver). ``--database`` defaults to ``$DATABASE_URL``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
from typing import Any

from ..enqueuer import Enqueuer
from ..errors import ErrandsError
from ..store.connection import connect
from .target import Target, add_target_options

__all__ = ["add_relay_command"]

log = logging.getLogger("errands.outbox")


def add_relay_command(sub: Any) -> None:
    p = sub.add_parser("relay", help="move committed outbox rows into Redis (needs sqlalchemy)")
    add_target_options(p)
    p.add_argument(
        "--database",
        metavar="URL",
        default=os.environ.get("DATABASE_URL"),
        help="SQLAlchemy URL of the database with errands_outbox (default $DATABASE_URL)",
    )
    p.add_argument("--batch", type=int, default=1000, help="rows per transaction (1..5000)")
    p.add_argument(
        "--poll-interval", type=float, default=1.0, help="seconds between polls without NOTIFY"
    )
    p.set_defaults(func=_relay)


def _relay(args: argparse.Namespace) -> int:
    if not args.database:
        raise ErrandsError("give --database URL (or set DATABASE_URL)")
    try:
        from ..contrib.sqlalchemy_relay import SQLAlchemySource
        from ..outbox.relay import OutboxRelay
    except ImportError as exc:
        msg = f"the relay needs SQLAlchemy: pip install 'sqlalchemy>=2' ({exc})"
        raise ErrandsError(msg) from None
    target = Target.resolve(args)
    try:
        source = SQLAlchemySource(args.database)
        relay = OutboxRelay(source, batch=args.batch, poll_interval=args.poll_interval)
    except (ValueError, ImportError) as exc:
        raise ErrandsError(str(exc)) from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    print(f"errands relay: {source.dialect} database -> {target.where}", flush=True)
    asyncio.run(_run(relay, target))
    return 0


async def _run(relay: Any, target: Target) -> None:
    redis = connect(target.url) if target.url else target.redis
    enqueuer = Enqueuer(  # (the --app pool's serializer: its workers decode the jobs)
        redis, namespace=target.namespace, url=target.url, serializer=target.serializer, strict=None
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    relay.start(enqueuer)
    try:
        await stop.wait()
    finally:
        await relay.stop()
        with contextlib.suppress(Exception):
            await redis.aclose()
    log.info("outbox relay stopped after %d rows", relay.relayed)
