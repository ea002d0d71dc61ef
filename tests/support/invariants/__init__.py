"""The invariant checker: what must hold in a namespace once it is quiet, whatever happened
before (kills, restarts, lost replies). The one place in the tests that understands errands'
data layout as a whole, built on ``errands.store.keys.Keys``: when the layout changes, only this
module changes (``LAYOUT`` below must name every key ``Keys`` builds; a test enforces it).

>>> await assert_invariants(redis, namespace)                  # raises InvariantViolations
>>> report = await check_invariants(redis, namespace, oracle)   # report.violations, .figures

Checked on a snapshot listed and read in one step (a read-only script, layout.py: consistent
even while pools run):

* **places**: every job id is in exactly one place (its queue, scheduled or retry set, the
  in-progress set of a registered pool, the dead set, the cancelled set) or in none once
  finished/removed; every id in a place has an envelope, every envelope a place, and the place
  matches the envelope's job name; a finished record never belongs to a job still alive.
* **running**: every ``running`` counter equals the number of that name's jobs in in-progress
  sets (never negative).
* **unique**: every unique lock is held by a waiting job (queued or scheduled) and its three
  records agree; no lock record without its lock, but a fetch's mark (``<expiry>:<digest>``,
  its lock released) on a running job.
* **dedup**: every dedup key is owned by a live job (a waiting one when held until the start),
  the key's two records agree, every throttle window has a TTL. Quiet and drained, no key
  remains (no owner is live), so the dedup keys are empty then.
* **per-job fields**: no recovery counter or check-in without a live (waiting or running) job, no
  cancel request without a running job, no priority, last error or checkpoint (of an iterable
  job) without an envelope.
* **keys**: no key the layout does not know, no finished record without a TTL, no pool
  description, idle mark or in-progress set of an unregistered pool, history index and records
  agree; a revoked-sessions record of the dashboard and every activity-counter bucket have a
  TTL.
* **partitions** (flow control, partitions.py): running counts per partition, every queued job
  of a partition indexed and in turn, every index entry of such a job (no stale one), no turn
  or rate wait of a job name with nothing indexed; the turns and waits of partitions with no
  queued job (legal, dropped by the name's next fetches) are counted (``idle_turns``).
* with ``drained=True``: nothing waiting on a queue (unless paused), nothing in progress, nothing
  overdue in a scheduled or retry set, every counter 0; with ``stopped=True`` moreover no pool
  registered (every worker was stopped).

Given an ``OracleLog`` (handler starts and ends recorded outside the Redis under test):

* **double-run**: no job ran twice at the same time (time a process spent frozen by SIGSTOP, and
  ``resume_allowance`` seconds after its SIGCONT, do not count; a run without a recorded end
  lasts until its process exited);
* **cap**: no more runs of a ``max_concurrency``-capped name at once than its cap;
* **lost**: every acknowledged enqueue is alive somewhere or finished (its finished record
  exists), unless the test removed it on purpose (``gone_by_design``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis

from errands.store.keys import Keys

from .checks import CHECKS, check_drained
from .layout import LAYOUT, TEST_KEYS, done_status, snapshot
from .partitions import idle_turns
from .report import InvariantViolations, Report, Violation
from .runs import OracleLog, Run, check_runs, max_overlap

__all__ = [
    "LAYOUT",
    "InvariantViolations",
    "OracleLog",
    "Report",
    "Run",
    "Violation",
    "assert_invariants",
    "check_invariants",
    "max_overlap",
]


async def check_invariants(
    redis: Redis,
    namespace: str | Keys,
    oracle: OracleLog | None = None,
    *,
    drained: bool = False,
    stopped: bool = False,
    overdue: float = 5.0,
    foreign: Sequence[str] = TEST_KEYS,
) -> Report:
    """Read the namespace and return every violation found (see the module docstring).
    ``overdue``: seconds a scheduled or retried job may be late when ``drained``; ``foreign``:
    sub-prefixes of the namespace's keys that the tests own (not reported as stray)."""
    keys = namespace if isinstance(namespace, Keys) else Keys(namespace)
    s = await snapshot(redis, keys, foreign)
    report = Report(keys.namespace)
    for check in CHECKS:
        report.violations += check(s)
    if drained or stopped:
        report.violations += check_drained(s, stopped, int(overdue * 1000))
    places = Counter(p.split(":")[0] for where in s.places.values() for p, _n in where)
    report.figures = {
        "jobs": len(s.envelopes),
        "places": dict(places),
        "finished_records": sum(1 for r, _t in s.done.values() if done_status(r) == "finished"),
        "pools": len(s.zsets["pools"]),
        "idle_turns": idle_turns(s),
        "leaked_keys": sum(
            1 for v in report.violations if v.check in ("keys", "fields", "unique", "dedup")
        ),
    }
    if oracle is not None:
        finished = {i for i, (r, _t) in s.done.items() if done_status(r) == "finished"}
        alive = {i for i in s.envelopes if i in s.places}
        orphaned = set(s.envelopes) - alive
        found, figures = check_runs(oracle, finished, alive, orphaned)
        report.violations += [Violation(check, detail) for check, detail in found]
        report.figures.update(figures)
    return report


async def assert_invariants(
    redis: Redis,
    namespace: str | Keys,
    oracle: OracleLog | None = None,
    *,
    context: str = "",
    **options: Any,
) -> Report:
    """``check_invariants``, raising ``InvariantViolations`` (an AssertionError listing every
    violation, prefixed by ``context``) when any is found."""
    report = await check_invariants(redis, namespace, oracle, **options)
    if report.violations:
        raise InvariantViolations(report, context)
    return report
