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

from tests.outbox.marked_app import Marked
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


async def test_relay_command_encodes_as_the_app_pool_does(
    redis_url: str, namespace: str, redis: Redis, tmp_path: Path
) -> None:
    """With ``--app``, the jobs are encoded by the serializer of the app's pool, which its
    workers decode them with (JSON would be undecodable for them)."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    make_table(url)
    ids = write(url, 3)
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    env |= {"REDIS_URL": redis_url, "ERRANDS_NAMESPACE": namespace}
    argv = [sys.executable, "-m", "errands", "relay", "--database", url, "--poll-interval", "0.05"]
    argv += ["--app", "tests.outbox.marked_app:pool"]
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        async with asyncio.timeout(30):
            while await redis.hlen(Keys(namespace).jobs) < 3:
                await asyncio.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            _, err = await proc.communicate()
    assert proc.returncode == 0, err
    for job_id in ids:
        envelope = await redis.hget(Keys(namespace).jobs, job_id)
        assert envelope is not None
        assert Marked().loads(envelope)["n"] == "welcome"


def test_relay_command_needs_a_database() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["PYTHONPATH"] = str(ROOT / "src")
    result = subprocess.run(
        [sys.executable, "-m", "errands", "relay"], env=env, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "--database" in result.stderr
