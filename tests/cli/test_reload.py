"""docs/workers.md's --reload timings and files, without time passing: the poll every 0.5 s,
the files watched (added, changed, removed; skipped directories), and a restart's stop (SIGTERM,
10 s for running jobs, SIGTERM again, 5 s, then SIGKILL). tests/cli/test_worker.py runs it."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from errands.cli import commands, worker


def test_it_polls_twice_a_second() -> None:
    args = commands.build_parser().parse_args(["worker", "jobs:pool", "--reload"])
    assert args.reload and args.reload_interval == 0.5


def test_py_files_added_changed_or_removed_are_seen_skipped_directories_not(
    tmp_path: Path,
) -> None:
    (tmp_path / "jobs.py").write_text("")
    (tmp_path / "notes.txt").write_text("")
    skipped = [".git", ".venv", "__pycache__", "node_modules", "site-packages", "venv", "env"]
    for name in [*skipped, "build"]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "x.py").write_text("")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text("")
    before = worker.snapshot(tmp_path)
    assert sorted(os.path.relpath(p, tmp_path) for p in before) == ["jobs.py", "pkg/mod.py"]
    (tmp_path / "pkg" / "new.py").write_text("")
    assert worker.snapshot(tmp_path) != before
    (tmp_path / "pkg" / "new.py").unlink()
    assert worker.snapshot(tmp_path) == before
    os.utime(tmp_path / "jobs.py", ns=(0, 1))
    assert worker.snapshot(tmp_path) != before
    (tmp_path / "jobs.py").unlink()
    assert len(worker.snapshot(tmp_path)) == 1


class Child:
    """A worker process that never exits by itself: it records the signals and waits."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, float | int]] = []

    def poll(self) -> int | None:
        return None

    def send_signal(self, sig: int) -> None:
        self.steps.append(("signal", sig))

    def wait(self, timeout: float) -> int:
        self.steps.append(("wait", timeout))
        raise subprocess.TimeoutExpired("worker", timeout)


def test_a_restart_gives_running_jobs_10_s_then_cancels_them_then_kills() -> None:
    child = Child()
    worker._stop(child)  # type: ignore[arg-type]
    assert child.steps == [
        ("signal", signal.SIGTERM),
        ("wait", 10.0),
        ("signal", signal.SIGTERM),  # the second signal: running jobs cancelled and requeued
        ("wait", 5.0),
        ("signal", signal.SIGKILL),
        ("wait", 5.0),
    ]


def test_a_worker_that_crashed_waits_for_the_next_change(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker that exits (an import error) is not started again until a file changes."""

    class Crashed:
        def poll(self) -> int:
            return 1

        returncode = 1

    class Done(Exception):
        pass

    views = iter([{"a.py": 1}, {"a.py": 1}, {"a.py": 1}, {"a.py": 1}, {"a.py": 2}])
    spawned: list[int] = []

    def snapshot(_root: Path) -> dict[str, int]:
        try:
            return next(views)
        except StopIteration:
            raise Done from None

    def spawn(_cmd: list[str]) -> Crashed:
        spawned.append(len(spawned))
        return Crashed()

    monkeypatch.setattr(worker, "snapshot", snapshot)
    monkeypatch.setattr(worker, "_spawn", spawn)
    monkeypatch.setattr(worker, "_stop", lambda _child: None)
    monkeypatch.setattr(time, "sleep", lambda _s: None)  # (the time worker.py reads)
    monkeypatch.setattr(signal, "signal", lambda *_a: None)
    args = commands.build_parser().parse_args(["worker", "jobs:pool", "--reload"])
    with pytest.raises(Done):
        worker.run_reloading(args)
    assert spawned == [0, 1]  # the first, then only after a.py changed
