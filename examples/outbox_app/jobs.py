"""The jobs and the worker pool of the outbox example; the pool also relays the outbox."""

from __future__ import annotations

import logging
import os
from typing import Any

from sqlalchemy.ext.asyncio import create_async_engine

from errands import WorkerPool
from errands.contrib.sqlalchemy_outbox import create_outbox_table
from errands.contrib.sqlalchemy_relay import SQLAlchemySource
from errands.outbox import OutboxRelay

REDIS_URL = os.environ.get("REDIS_URL", "redis://localhost:6379/0")
NAMESPACE = os.environ.get("ERRANDS_NAMESPACE", "example")
DATABASE_URL = os.environ.get("DATABASE_URL", "sqlite+aiosqlite:///outbox-example.db")

log = logging.getLogger("example.jobs")
pool = WorkerPool.from_url(REDIS_URL, namespace=NAMESPACE)
engine = create_async_engine(DATABASE_URL)


@pool.on_startup
async def make_table(context: dict[str, Any]) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(create_outbox_table)


# every pool may relay; each batch of committed rows is claimed by one of them
OutboxRelay(SQLAlchemySource(engine), poll_interval=0.2).attach(pool)


@pool.job("send_welcome")
async def send_welcome(user_id: int, email: str) -> None:
    log.info("welcome mail to %s (user %d)", email, user_id)
