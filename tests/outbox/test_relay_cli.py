"""``python -m errands relay``: the relay as a process of its own, stopped by SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from redis.asyncio import Redis

from errands.store.keys import Keys

pytest.importorskip("sqlalchemy")
pytest.importorskip("aiosqlite")

from tests.outbox.test_relay import make_table, write

ROOT = Path(__file__).resolve().parents[2]


async def test_relay_command(redis_url: str, namespace: str, redis: Redis, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    make_table(url)
    ids = write(url, 40)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    argv = [sys.executable, "-m", "errands", "relay", "--database", url, "--redis", redis_url]
    argv += ["--namespace", namespace, "--poll-interval", "0.05", "--batch", "7"]
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        async with asyncio.timeout(30):
            while await redis.hlen(Keys(namespace).jobs) < 40:
                await asyncio.sleep(0.02)
        more = await asyncio.to_thread(write, url, 5, start=40)
        async with asyncio.timeout(30):
            while await redis.hlen(Keys(namespace).jobs) < 45:
                await asyncio.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            out, err = await proc.communicate()
    assert proc.returncode == 0, err
    assert b"errands relay: sqlite database" in out
    jobs = {k.decode() for k in await redis.hkeys(Keys(namespace).jobs)}
    assert jobs == set(ids + more)


def test_relay_command_needs_a_database() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["PYTHONPATH"] = str(ROOT / "src")
    result = subprocess.run(
        [sys.executable, "-m", "errands", "relay"], env=env, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "--database" in result.stderr
