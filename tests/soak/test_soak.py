"""The randomized fault soak of issue 12 (``make test-soak``; deselected from ``make test``).

``SOAK_SECONDS`` (default 600) is how long faults are injected, ``SOAK_SEED`` replays a seed's
fault schedule (default: a random seed, printed at the start and in every failure),
``SOAK_DIR`` keeps the logs and ``soak-report.json`` somewhere else than pytest's tmp dir.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .driver import Soak, SoakConfig

CONFIG = SoakConfig.from_env()

pytestmark = [pytest.mark.soak, pytest.mark.timeout(CONFIG.seconds + CONFIG.quiesce_timeout + 300)]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = Path(os.environ.get("SOAK_DIR") or tmp_path)
    path.mkdir(parents=True, exist_ok=True)
    return path


async def test_soak(workdir: Path) -> None:
    result = await Soak(CONFIG, workdir).run()
    assert result.ok, result.describe()
