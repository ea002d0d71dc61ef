"""mypy accepts typed enqueue calls that fit a handler's parameters and rejects the others
(tests/typing_check.py: lines marked ``# error``)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SNIPPET = ROOT / "tests" / "typing_check.py"


def test_mypy_checks_enqueue_calls_against_the_handler(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-error-summary",
            "--show-error-codes",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--config-file",
            str(ROOT / "pyproject.toml"),
            str(SNIPPET),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = SNIPPET.read_text("utf-8").splitlines()
    expected = {i for i, line in enumerate(lines, 1) if line.rstrip().endswith("# error")}
    reported: dict[int, list[str]] = {}
    for match in re.finditer(r"typing_check\.py:(\d+): error: (.*)", proc.stdout):
        reported.setdefault(int(match.group(1)), []).append(match.group(2))
    assert len(expected) >= 10
    unexpected = {n: reported[n] for n in sorted(set(reported) - expected)}
    assert not unexpected, f"mypy rejected good lines: {unexpected}\n{proc.stdout}{proc.stderr}"
    missed = sorted(expected - set(reported))
    assert not missed, f"mypy accepted bad lines {missed}:\n{proc.stdout}{proc.stderr}"
