"""The outbox written from Django (its app's migration and enqueue_in_outbox), relayed by the
SQLAlchemy relay from the same table, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from errands import Enqueuer
from errands.store.keys import Keys
from tests.support.invariants import assert_invariants

pytest.importorskip("django")
pytest.importorskip("sqlalchemy")
pytest.importorskip("aiosqlite")

from sqlalchemy import create_engine, text

from errands.contrib.sqlalchemy_relay import SQLAlchemySource
from errands.outbox import OutboxRelay
from tests.outbox.conftest import new_pg_database

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def enqueuer(redis_url: str, namespace: str) -> AsyncIterator[Enqueuer]:
    async with Enqueuer.from_url(redis_url, namespace=namespace, strict=None) as enqueuer:
        yield enqueuer


async def django_writes(*argv: str) -> dict[str, list[str]]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "tests.outbox.django_outbox", *argv],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    ids: dict[str, list[str]] = json.loads(result.stdout)
    return ids


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_django_rows_are_relayed(
    kind: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    enqueuer: Enqueuer,
    redis: Redis,
    namespace: str,
) -> None:
    if kind == "sqlite":
        path = tmp_path / "app.db"
        ids = await django_writes("sqlite", str(path))
        sync_url, async_url = f"sqlite:///{path}", f"sqlite+aiosqlite:///{path}"
    else:
        base = new_pg_database(request.getfixturevalue("pg_server"))
        name, host = base.split("/", 1)[1].split("?")[0], base.split("host=", 1)[1]
        ids = await django_writes("postgresql", host, name)
        sync_url, async_url = f"postgresql+psycopg://{base}", f"postgresql+psycopg://{base}"
        engine = create_engine(sync_url)
        with engine.connect() as conn:
            triggers = conn.scalar(
                text("select count(*) from pg_trigger where tgname = 'errands_outbox_notify'")
            )
        engine.dispose()
        assert triggers == 1
    assert len(ids["committed"]) == 21 and len(ids["rolled_back"]) == 6
    relay = OutboxRelay(SQLAlchemySource(async_url))
    assert await relay.drain(enqueuer) == 21
    await relay.source.aclose()
    keys = Keys(namespace)
    stored = {k.decode() for k in await redis.hkeys(keys.jobs)}
    assert stored == set(ids["committed"])
    assert await redis.zscore(keys.queue("welcome"), "signup-9") is not None
    await assert_invariants(redis, namespace)
