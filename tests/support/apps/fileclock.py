"""A fake clock shared by processes: the test writes the time to a file, every process reads it.

``FileClock(path).set(t)`` (in the test) moves the time of every pool process started with
``ERRANDS_TEST_CLOCK=path`` (see ``periodic.py`` here). Writes are atomic (``os.replace``).
"""

from __future__ import annotations

import os
from pathlib import Path


class FileClock:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def now(self) -> float:
        for _ in range(100):
            text = self.path.read_text().strip()
            if text:
                return float(text)
        raise RuntimeError(f"clock file {self.path} is empty")

    def set(self, when: float) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(repr(float(when)))
        os.replace(tmp, self.path)

    def advance(self, seconds: float) -> None:
        self.set(self.now() + seconds)
