"""The verdict of a soak: the invariant checker's reports (workers idle, then stopped, with the
oracle), the analysis of runs, and the figures printed at the end."""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis

from errands.store.keys import Keys
from tests.support.invariants import OracleLog, Report, Run, check_invariants

from .analysis import Analysis, Events, analyse, double_cause, in_flight, parse_runs, table
from .dedupcheck import check_dedup, parse_keyed_runs
from .flow import check_partitions, check_workflows, parse_part_runs
from .itercheck import check_iterable, parse_iter_runs
from .leaks import dedup_key_leaks, flow_key_leaks
from .load import WF_LINGER
from .plan import CAPS, DEDUP, ITERABLE, PARTITIONED

if TYPE_CHECKING:
    from .driver import SoakConfig
    from .load import Production

__all__ = ["COVERED", "SoakResult", "judge"]

# the kinds whose checkers have fault paths (a recovery to judge): label -> job name; the figure
# running_when_killed_or_frozen counts their runs a SIGKILL or a SIGSTOP met
COVERED = {"dedup": DEDUP.name, "iterable": ITERABLE.name}


@dataclass
class SoakResult:
    config: SoakConfig
    plan: str  # digest of the fault schedule
    events: Events = field(default_factory=Events)
    applied: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    bad_exits: list[tuple[int, Any]] = field(default_factory=list)
    quiesce_s: float = 0.0
    idle: Report | None = None  # the namespace with every worker idle
    final: Report | None = None  # after every worker stopped, with the oracle
    analysis: Analysis = field(default_factory=Analysis)
    # flow control, workflows, dedup keys, iterable jobs and their keys (tests/soak/flow.py,
    # dedupcheck.py, itercheck.py, leaks.py): (check, detail)
    flow: list[tuple[str, str]] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    workdir: str = ""
    t0: float = 0.0  # time.time() at the start of the faults: the records are shown from it

    @property
    def ok(self) -> bool:
        return not self.flow and all(r is not None and r.ok for r in (self.idle, self.final))

    def describe(self) -> str:
        c = self.config
        lines = [f"soak failed: seed={c.seed} (replay: {c.replay()}; plan {self.plan})"]
        if self.workdir:
            lines.append(f"worker logs, plan.txt, soak.log and soak-report.json in {self.workdir}")
        for what, report in (("workers idle", self.idle), ("workers stopped", self.final)):
            if report is not None and not report.ok:
                lines += [f"-- {what}: " + report.describe()]
        if self.flow:
            lines.append(
                f"-- flow control, workflows, dedup, iterable jobs: {len(self.flow)} violations"
            )
            lines += [f"  [{check}] {detail}" for check, detail in self.flow[:50]]
        lines.append("figures:\n" + self.table())
        return "\n".join(lines)

    def table(self) -> str:
        return table(self.figures)

    def as_json(self) -> dict[str, Any]:
        return {
            "figures": self.figures,
            "violations": {
                what: [str(v) for v in r.violations]
                for what, r in (("idle", self.idle), ("stopped", self.final))
                if r is not None
            },
            "flow": [f"[{check}] {detail}" for check, detail in self.flow],
            "t0": self.t0,
            "unexplained_reruns": self.analysis.unexplained,
            "not_recovered": self.analysis.not_recovered,
            "bad_exits": self.bad_exits,
            "events": {  # time.time(), for re-analysis (tests/soak/analysis.py)
                "kills": self.events.kills,
                "exits": self.events.exits,
                "frozen": self.events.frozen,
                "slots": self.events.slots,
                "disturbed": self.events.disturbed,
            },
        }


async def judge(
    result: SoakResult,
    admin: Redis,
    namespace: str,
    raw_runs: list[bytes],
    made: Production,
    idle: Report,
    raw_items: Sequence[bytes] = (),
) -> None:
    c = result.config
    runs = parse_runs(raw_runs, result.t0)
    events = result.events.shifted(result.t0)
    log = _oracle_log(result, made, runs, events)
    final = await check_invariants(admin, namespace, log, stopped=True)
    result.idle, result.final = idle, final
    k = Keys(namespace)
    dead = {m.decode() for m in await admin.zrange(k.dead, 0, -1)}
    ended = dead | {m.decode() for m in await admin.zrange(k.cancelled, 0, -1)}
    ids = sorted({r.job_id for r in runs})
    async with admin.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.exists(k.done(job_id))
        finished = {i for i, n in zip(ids, await pipe.execute(), strict=True) if n}
    resend = c.socket_timeout * 2 + 2.0
    settled = ended | finished | made.destroyed
    result.analysis = analyse(runs, events, settled, resend, c.dead_timeout, c.resume_allowance)
    p = PARTITIONED
    parts = check_partitions(
        parse_part_runs(raw_runs, p.name, result.t0), log, p.rate, p.per,
        lambda a, b: double_cause(a, b, events, c.dead_timeout, resend),
    )  # fmt: skip
    flows = check_workflows(runs, made.workflows, made.workflows_acked, dead)
    leaks = await flow_key_leaks(admin, k, p.name, p.per, made.workflows, WF_LINGER)
    more, more_figures = await _dedup_and_iterable(admin, k, raw_runs, raw_items, made, log,
                                                   result.t0, dead, ended)  # fmt: skip
    result.flow = parts.violations + flows.violations + [("leak", leak) for leak in leaks] + more
    f = final.figures
    result.figures = {
        **_head_figures(result, made, final, len(runs)),
        **result.analysis.figures(),
        "running_when_killed_or_frozen": in_flight(runs, events, COVERED),
        "partition_jobs_enqueued": len(made.partitions),
        "partition_jobs_done": len(set(made.partitions) & finished),
        "partition_jobs_neither_done_nor_cancelled": len(
            set(made.partitions) - finished - ended - made.destroyed
        ),
        **parts.figures,
        **flows.figures,
        **more_figures,
        "leaked_flow_keys": len(leaks),
        "leaked_keys": f.get("leaked_keys", 0) + len(leaks) + more_figures["leaked_dedup_keys"],
        "violations_idle": idle.by_check(),
        "violations_stopped": final.by_check(),
        "quiesce_s": round(result.quiesce_s, 1) if not math.isinf(result.quiesce_s) else "timeout",
        "bad_exits": len(result.bad_exits),
    }


def _oracle_log(result: SoakResult, made: Production, runs: list[Run], events: Events) -> OracleLog:
    """What the soak knows from outside the Redis under test (``events`` shifted as ``runs``)."""
    return OracleLog(
        runs=runs,
        caps=CAPS,
        acknowledged=[*made.acknowledged, *made.dedup_enqueued],
        gone_by_design=made.destroyed,
        exits=events.exits,
        frozen=events.frozen,
        resume_allowance=result.config.resume_allowance,
        horizon=time.time() - result.t0,
    )


def _head_figures(result: SoakResult, made: Production, final: Report, runs: int) -> dict[str, Any]:
    """The first figures of a soak: its settings, faults, production and the checker's counts."""
    c, f = result.config, final.figures
    caps = [v for v in final.violations if v.check == "cap"]
    return {
        "seed": c.seed,
        "seconds": c.seconds,
        "plan": result.plan,
        "faults_applied": dict(sorted(result.applied.items())),
        "faults_skipped": dict(sorted(result.skipped.items())),
        "jobs_enqueued": len(made.acknowledged),
        "enqueued_by_kind": dict(sorted(made.by_kind.items())),
        "enqueues_refused": made.refused,
        "unique_duplicates": made.duplicates,
        "cancels": dict(sorted(made.cancelled.items())),
        "handler_runs": runs,
        "jobs_done": f.get("finished_records", 0),
        "jobs_dead": f.get("places", {}).get("dead", 0),
        "jobs_cancelled": f.get("places", {}).get("cancelled", 0),
        "jobs_lost": f.get("lost", 0),
        "concurrent_double_runs": f.get("double_runs", 0),
        "cap_violations": len(caps),
        "cap_max": f.get("cap_max", {}),
    }


async def _dedup_and_iterable(
    admin: Redis,
    k: Keys,
    raw_runs: Sequence[bytes],
    raw_items: Sequence[bytes],
    made: Production,
    log: OracleLog,
    t0: float,
    dead: set[str],
    ended: set[str],
) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """The checks of the deduplicated and the iterable job types (tests/soak/dedupcheck.py,
    itercheck.py) and the dedup keys left (leaks.py): (check, detail) and figures."""
    calls = [c.shifted(t0) for c in made.dedup_calls]
    dedup = check_dedup(calls, parse_keyed_runs(raw_runs, DEDUP.name, t0), log, dead)
    required = set(made.iterables) - ended - made.destroyed
    iters = check_iterable(parse_iter_runs(raw_runs, raw_items, ITERABLE.name, t0), log, required)
    jobs = {c.carrier for c in calls if c.carrier} | {c.holder for c in calls if c.holder}
    keys = {c.key for c in calls}
    leaks = await dedup_key_leaks(admin, k, DEDUP.name, keys, jobs)
    found = dedup.violations + iters.violations + [("dedup-leak", leak) for leak in leaks]
    return found, {**dedup.figures, **iters.figures, "leaked_dedup_keys": len(leaks)}
