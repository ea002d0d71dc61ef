"""A relay process for the crash tests: ``python -m tests.outbox.crash_relay DATABASE_URL
REDIS_URL NAMESPACE POINT N`` relays batches of 50 until the table is empty, and kills itself
(SIGKILL) at its N-th batch: ``claim`` after claiming the rows, before Redis has them; ``enqueue``
after Redis has them, before the delete commits; ``none`` never; ``loop`` relays until killed."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from errands import Enqueuer
from errands.contrib.sqlalchemy_relay import SQLAlchemySource
from errands.outbox import OutboxRelay, OutboxRow
from errands.outbox.relay import send_rows


async def main(database: str, redis_url: str, namespace: str, point: str, nth: int) -> None:
    source = SQLAlchemySource(database)
    relay = OutboxRelay(source, batch=50, poll_interval=0.05)
    batches = 0
    async with Enqueuer.from_url(redis_url, namespace=namespace, strict=None) as enqueuer:

        async def send(rows: list[OutboxRow]) -> None:
            nonlocal batches
            batches += 1
            if point == "claim" and batches == nth:
                os.kill(os.getpid(), signal.SIGKILL)
            await send_rows(enqueuer, rows)
            if point == "enqueue" and batches == nth:
                os.kill(os.getpid(), signal.SIGKILL)

        while True:
            n = await source.relay_batch(relay.batch, send)
            if n == 0 and point != "loop":
                break
            if n == 0:
                await source.wait(0.05)
    await source.aclose()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5], int(sys.argv[5])))
