"""examples/long_jobs.py runs and shows what docs/long-jobs.md says."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_long_jobs_example_runs(redis_url: str) -> None:
    env = {**os.environ, "REDIS_URL": redis_url, "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    run = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "long_jobs.py")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "stopped: queued, " in run.stdout
    assert "resumed and finished: {'done': 40, 'cursor': 40}" in run.stdout
    assert "indexing a batch of 100 documents" in run.stdout
    assert "indexed 250 documents, 1 in the dead set" in run.stdout
    assert "all done" in run.stdout
