"""enqueue_on_commit with Django's transactions on SQLite (in a process of its own: Django's
settings are process-wide)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from redis.asyncio import Redis

from errands.store.keys import Keys
from tests.support.invariants import assert_invariants

ROOT = Path(__file__).resolve().parents[2]


async def test_django_on_commit(
    redis_url: str, namespace: str, redis: Redis, tmp_path: Path
) -> None:
    pytest.importorskip("django")
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "tests.outbox.django_scenarios", redis_url, namespace,
         str(tmp_path / "app.db")],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    ids = json.loads(result.stdout)
    stored = {key.decode() for key in await redis.hkeys(Keys(namespace).jobs)}
    assert stored == set(ids["kept"])
    assert "user-7" in stored
    assert len(ids["dropped"]) == 3
    await assert_invariants(redis, namespace)
