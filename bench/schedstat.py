"""What the scheduler gave a process during a throughput run: the CPU time and the run-queue
wait (time runnable but not running) of its main thread, from Linux's ``/proc/<pid>/schedstat``.

On a busy machine (``run.py --busy N``) a worker's rate is set less by its CPU per job than by
how long it and Redis wait for a CPU each time one wakes the other: the wait per job, beside
the CPU per job, shows which. None where the file is missing (not Linux, no schedstats)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["Sample", "per_job_us", "sample"]

Sample = tuple[int, int]  # ns on the CPU, ns waiting on a run queue


def sample(pid: int) -> Sample | None:
    try:
        cpu, wait, _ = Path(f"/proc/{pid}/schedstat").read_text().split()
    except (OSError, ValueError):
        return None
    return int(cpu), int(wait)


def per_job_us(
    before: Sample | None, after: Sample | None, jobs: int
) -> tuple[float, float] | None:
    """CPU and run-queue wait, µs per job, between two samples of one process."""
    if before is None or after is None or jobs <= 0:
        return None
    return (after[0] - before[0]) / jobs / 1e3, (after[1] - before[1]) / jobs / 1e3
