"""The soak's checks of flow control and workflows (``tests/soak/flow.py``) on made-up logs: a
violation is caught, its absence is not reported; and the load's draws replay from a seed."""

from __future__ import annotations

import random
from typing import Any

import orjson

from tests.support.invariants import OracleLog, Run

from .flow import PartRun, check_partitions, check_workflows, parse_part_runs
from .load import partition_burst, workflow_graph

NAME = "soak_part"


def _entries(*runs: tuple[str, int, float, float | None, str, str, str]) -> list[bytes]:
    out = []
    for job_id, pid, start, end, outcome, part, token in runs:
        e: dict[str, Any] = {"id": job_id, "name": NAME, "pid": pid, "start": start}
        out.append(orjson.dumps({**e, "part": part, "token": token}))
        if end is not None:
            out.append(orjson.dumps({**e, "end": end, "outcome": outcome, "part": part,
                                     "token": token}))  # fmt: skip
    return out


def _part(job_id: str, pid: int, start: float, end: float | None, part: str, ms: int) -> PartRun:
    return PartRun(Run(job_id, NAME, pid, start, end, "ok"), part, float(ms), f"1@{ms}")


def test_parse_part_runs_reads_the_partition_and_the_counted_start() -> None:
    raw = _entries(("a", 1, 10.0, 10.5, "ok", "p1", "7@10000"), ("b", 2, 11.0, None, "", "p2", "8"))
    raw.append(orjson.dumps({"id": "c", "name": "other", "pid": 1, "start": 1.0}))
    assert parse_part_runs(raw, NAME, t0=10.0) == [
        PartRun(Run("a", NAME, 1, 0.0, 0.5, "ok"), "p1", 10000.0, "7@10000"),
        PartRun(Run("b", NAME, 2, 1.0, None, ""), "p2", None, "8"),
    ]


def test_a_partition_run_twice_at_once_is_caught() -> None:
    log = OracleLog(exits={3: 20.0}, frozen={4: [(30.0, 34.0)]}, resume_allowance=1.0)
    clean = [
        _part("a", 1, 1.0, 2.0, "p1", 1000),
        _part("b", 2, 2.0, 3.0, "p1", 2000),  # starts as a ends: not at once
        _part("c", 1, 1.5, 2.5, "p2", 1500),  # another partition
        _part("d", 3, 18.0, None, "p3", 18000),  # its process was killed at 20 (no end)
        _part("e", 2, 21.0, 22.0, "p3", 21000),
        _part("f", 4, 29.0, 35.0, "p4", 29000),  # frozen 30-34, ran on until 35 (allowance)
        _part("g", 2, 35.0, 35.5, "p4", 35000),
    ]
    report = check_partitions(clean, log, rate=4, per=1.0)
    assert report.violations == []
    assert report.figures["partition_running_max"] == 1
    assert report.figures["partition_concurrency_violations"] == 0
    causes: list[tuple[str, str]] = []

    def cause(first: Run, second: Run) -> str:
        causes.append((first.job_id, second.job_id))
        return "no fault found"

    late = [*clean, _part("h", 2, 34.5, 34.8, "p4", 34500)]  # within f's allowance: no
    assert check_partitions(late, log, 4, 1.0, cause).violations == []
    bad = [*clean, _part("i", 2, 19.0, 19.2, "p3", 19000)]  # while d ran (before its kill)
    report = check_partitions(bad, log, 4, 1.0, cause)
    assert [c for c, _d in report.violations] == ["partition-concurrency"]
    assert "partition p3" in report.violations[0][1] and causes == [("d", "i")]
    assert report.figures["partition_overlaps_by_cause"] == {"no fault found": 1}


def test_more_counted_starts_than_the_rate_in_a_window_are_caught() -> None:
    log = OracleLog()
    # 4 a second: 4 starts counted, then the 5th exactly a window after the 1st (allowed); the
    # handlers all started within 0.1 s (held by lookahead, late replies): only the count holds
    ok = [_part(f"j{i}", 1, 5.0 + i / 50, 5.0 + (i + 1) / 50, "p1", ms)
          for i, ms in enumerate((0, 100, 200, 300, 1000, 1100))]  # fmt: skip
    ok.append(PartRun(Run("j4", NAME, 2, 6.0, 6.1, "ok"), "p1", 1000.0, ok[4].token))  # same fetch
    report = check_partitions(ok, log, rate=4, per=1.0)
    assert report.violations == []
    assert report.figures["partition_counted_starts_max"] == 4
    # a re-run counts: j0 again at 999 ms (a new fetch, a new token)
    rerun = [*ok, PartRun(Run("j0", NAME, 3, 7.0, 7.1, "ok"), "p1", 999.0, "9@999")]
    report = check_partitions(rerun, log, rate=4, per=1.0)
    assert [c for c, _d in report.violations] == ["partition-rate"]
    assert "5 counted starts of partition p1 within 999 ms" in report.violations[0][1]
    assert report.figures["partition_counted_starts_max"] == 5
    assert check_partitions(rerun, log, rate=5, per=1.0).violations == []
    unknown = [*ok, PartRun(Run("k", NAME, 1, 9.0, 9.1, "ok"), "p2", None, "12")]
    assert check_partitions(unknown, log, 4, 1.0).violations == [
        ("partition-rate", "1 runs without a counted start")
    ]


def _wf_run(job_id: str, start: float, end: float | None, outcome: str = "ok") -> Run:
    return Run(job_id, "soak_wf", 1, start, end, outcome)


def test_a_member_started_before_its_parents_ended_is_caught() -> None:
    graph = {"root": ((), 0.1, 0), "f0": (("root",), 0.1, 0), "f1": (("root",), 0.1, 0),
             "sink": (("f0", "f1"), 0.1, 0)}  # fmt: skip
    graphs = {"w1": graph}
    runs = [
        _wf_run("w1.root", 1.0, 1.1, "error"),  # a retry is not an end
        _wf_run("w1.root", 2.0, 2.1),
        _wf_run("w1.f0", 2.2, 2.3),
        _wf_run("w1.f1", 2.2, 2.5),
        _wf_run("w1.f1", 2.9, None),  # ran again (its worker killed before the ack): fine
        _wf_run("w1.sink", 2.6, 2.7),
        _wf_run("w1!on_success", 2.8, 2.9),
    ]
    report = check_workflows(runs, graphs, acked=["w1"])
    assert report.violations == []
    assert report.figures["workflow_member_runs"] == 7
    assert report.figures["workflow_jobs_run_more_than_once"] == 2
    early = [*runs, _wf_run("w1.sink", 2.4, 2.45)]  # before f1 ended (at 2.5)
    report = check_workflows(early, graphs, acked=["w1"])
    assert [c for c, _d in report.violations] == ["workflow-order"]
    assert "w1.sink started at 2.400 before ['w1.f1']" in report.violations[0][1]
    assert report.figures["workflow_started_before_parents"] == 1
    # the callback before the sink ended; a member that only failed; no callback at all
    runs[-1] = _wf_run("w1!on_success", 2.65, 2.9)
    runs[1] = _wf_run("w1.root", 2.0, 2.1, "error")
    report = check_workflows(runs, graphs, acked=["w1"])
    details = [d for _c, d in report.violations]
    assert any(d.startswith("w1!on_success started at 2.650") for d in details)
    assert "member w1.root never succeeded" in details
    assert (
        check_workflows(runs[:-1], {"w1": graph}, acked=["w1"]).figures[
            "workflow_callbacks_missing"
        ]
        == 1
    )
    # a run a dead member failed (policy "fail") is not expected to complete
    dead = check_workflows(runs[:2], graphs, acked=["w1"], dead=["w1.root"])
    assert dead.violations == [] and dead.figures["workflow_runs_failed_by_a_dead_member"] == 1
    # a run whose enqueue raised is checked for order, not for completion
    assert check_workflows([], graphs, acked=[]).violations == []


def test_the_load_draws_replay_from_a_seed() -> None:
    def draws(seed: int) -> list[Any]:
        rng = random.Random(seed)
        return [(partition_burst(rng), workflow_graph(rng)) for _ in range(50)]

    assert draws(7) == draws(7) and draws(7) != draws(8)
    for _burst, graph in draws(7):
        for node, (parents, _seconds, fail) in graph.items():
            assert set(parents) < set(graph) and node not in parents and fail in (0, 1)
