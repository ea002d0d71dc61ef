"""enqueue_on_commit with Django's transactions on SQLite (in a process of its own: Django's
settings are process-wide)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from errands.store.keys import Keys
from tests.support.invariants import assert_invariants

ROOT = Path(__file__).resolve().parents[2]


async def scenario(module: str, redis_url: str, namespace: str, tmp_path: Path) -> Any:
    """Run ``tests.outbox.<module>`` in a process of its own; what it printed, as JSON."""
    pytest.importorskip("django")
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", f"tests.outbox.{module}", redis_url, namespace,
         str(tmp_path / "app.db")],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


async def test_django_on_commit(
    redis_url: str, namespace: str, redis: Redis, tmp_path: Path
) -> None:
    ids = await scenario("django_scenarios", redis_url, namespace, tmp_path)
    stored = {key.decode() for key in await redis.hkeys(Keys(namespace).jobs)}
    assert stored == set(ids["kept"])
    assert "user-7" in stored
    assert len(ids["dropped"]) == 3
    await assert_invariants(redis, namespace)


async def test_django_bad_jobs(
    redis_url: str, namespace: str, redis: Redis, tmp_path: Path
) -> None:
    """Bad options raise at the call; a job failing at the enqueue after the commit is logged,
    not raised into Django's on_commit loop, so the transaction's later job is stored too."""
    out = await scenario("django_bad_jobs", redis_url, namespace, tmp_path)
    assert out["raised"] == ["ValueError", "TypeError", "ValueError", "autocommit boom"]
    stored = {key.decode() for key in await redis.hkeys(Keys(namespace).jobs)}
    assert stored == set(out["kept"]) and len(stored) == 2
    [lost] = out["lost"]
    assert out["logged"] == [
        f"the transaction committed but job 'welcome' (id {lost}), enqueued on commit, "
        "was not stored"
    ]
    assert out["users"] == 1
