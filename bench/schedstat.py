"""What the scheduler gave a process during a throughput run: the CPU time and the run-queue
wait (time runnable but not running) of its main thread, from Linux's ``/proc/<pid>/schedstat``.

On a busy machine (``run.py --busy N``) a worker's rate is set less by its CPU per job than by
how long it and Redis wait for a CPU each time one wakes the other: the wait per job, beside
the CPU per job, shows which. None where the file is missing (not Linux, no schedstats).

Where the CPU burners ran matters as much (:class:`Placement`): on 2 cores, with both burners on
one core the worker and Redis have the other to themselves; with one burner on each, each of
them shares a core with a process that never sleeps."""

from __future__ import annotations

import threading
from pathlib import Path

__all__ = ["Placement", "Sample", "cpu_of", "per_job_us", "sample", "slices_per_job"]

Sample = tuple[int, int, int]  # ns on the CPU, ns waiting on a run queue, timeslices run


def sample(pid: int) -> Sample | None:
    try:
        cpu, wait, slices = Path(f"/proc/{pid}/schedstat").read_text().split()
    except (OSError, ValueError):
        return None
    return int(cpu), int(wait), int(slices)


def per_job_us(
    before: Sample | None, after: Sample | None, jobs: int
) -> tuple[float, float] | None:
    """CPU and run-queue wait, µs per job, between two samples of one process."""
    if before is None or after is None or jobs <= 0:
        return None
    return (after[0] - before[0]) / jobs / 1e3, (after[1] - before[1]) / jobs / 1e3


def slices_per_job(before: Sample | None, after: Sample | None, jobs: int) -> float | None:
    """Timeslices a process ran per job between two samples: about how often it woke (each
    wake of a process that slept starts a timeslice), which on a busy machine costs a wait for a
    CPU each time."""
    if before is None or after is None or jobs <= 0:
        return None
    return (after[2] - before[2]) / jobs


def cpu_of(pid: int) -> int | None:
    """The CPU ``pid`` last ran on (``/proc/<pid>/stat`` field 39), None if unknown."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[36])
    except (OSError, ValueError, IndexError):
        return None


class Placement:
    """Samples, every ``every`` seconds while entered, whether the processes ``pids`` ran on
    one CPU (their last CPU at that instant): :attr:`together` is the share of the samples
    in which they did (None without samples)."""

    def __init__(self, pids: list[int], every: float = 0.005) -> None:
        self.pids, self.every = pids, every
        self.samples = self.same = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> Placement:
        if len(self.pids) >= 2:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    @property
    def together(self) -> float | None:
        return self.same / self.samples if self.samples else None

    def _watch(self) -> None:
        while not self._stop.wait(self.every):
            cpus = {cpu_of(pid) for pid in self.pids}
            if None in cpus:
                return
            self.samples += 1
            self.same += len(cpus) == 1
