"""The soak's pure parts (run by ``make test``): a seed replays the same fault schedule, and the
analysis of runs tells recoveries and causes of re-runs apart."""

from __future__ import annotations

import orjson

from tests.support.invariants import Run

from .analysis import Events, analyse, in_flight, parse_runs
from .driver import SoakConfig
from .plan import DEDUP, ITERABLE, KINDS, PRODUCER, REDIS, make_plan, plan_digest


def test_a_seed_replays_the_same_schedule() -> None:
    a, b = make_plan(7, 600, 4), make_plan(7, 600, 4)
    assert a == b and plan_digest(a) == plan_digest(b)
    assert make_plan(8, 600, 4) != a
    assert {f.kind for f in a} == set(KINDS)  # 10 minutes hold every kind of fault
    assert all(0 < f.at < 600 for f in a) and [f.at for f in a] == sorted(f.at for f in a)
    for f in a:
        assert f.target in (*range(4), PRODUCER, REDIS)
        assert (f.target == REDIS) == (f.kind == "redis_restart")
        if f.kind == "delay":
            assert f.duration > 2.0  # past the soak's socket timeout
        if f.kind == "sigstop":
            assert f.duration < 3.0 * 0.7 or f.duration > 3.0 * 1.5  # clearly short or long
        assert f.aim in ("", DEDUP.name, ITERABLE.name)
        assert not f.aim or f.kind in ("sigkill", "sigterm", "sigstop")
    # some worker faults are aimed at each kind whose checker judges a run a fault met
    aims = [f.aim for f in a if f.kind in ("sigkill", "sigstop")]
    assert aims.count(DEDUP.name) >= 3 and aims.count(ITERABLE.name) >= 3 and aims.count("")


def test_config_from_the_environment() -> None:
    c = SoakConfig.from_env({"SOAK_SEED": "42", "SOAK_SECONDS": "30"})
    assert (c.seed, c.seconds, c.workers) == (42, 30.0, 4)
    assert c.replay() == "SOAK_SEED=42 SOAK_SECONDS=30 make test-soak"
    assert SoakConfig.from_env({}).seconds == 600.0


def test_parse_runs_pairs_starts_with_ends() -> None:
    raw = [
        orjson.dumps({"id": "a", "name": "n", "pid": 1, "start": 1.0}),
        orjson.dumps({"id": "b", "name": "n", "pid": 2, "start": 1.5}),
        orjson.dumps({"id": "a", "name": "n", "pid": 1, "start": 1.0, "end": 2.0, "outcome": "ok"}),
    ]
    assert parse_runs(raw) == [Run("a", "n", 1, 1.0, 2.0, "ok"), Run("b", "n", 2, 1.5)]


def test_analysis_of_reruns_and_recoveries() -> None:
    events = Events(
        kills=[(1, 10.0)],
        exits={1: 10.0},
        frozen={3: [(20.0, 30.0)]},
        slots={1: 0, 2: 1, 3: 2, 4: 3},
        disturbed=[(2, 40.0, 43.0, "blackhole"), (-1, 60.0, 63.0, "delay")],
    )
    runs = [
        Run("killed", "n", 1, 9.0),  # running at the SIGKILL, again 3.5 s later
        Run("killed", "n", 2, 13.5, 14.0, "ok"),
        Run("lost-with-pool", "n", 1, 9.5),  # never ran again, and did not end for good
        Run("flaky", "n", 2, 1.0, 1.1, "error"),
        Run("flaky", "n", 2, 2.0, 2.1, "ok"),
        Run("frozen", "n", 3, 19.0, 32.0, "ok"),
        Run("frozen", "n", 2, 24.0, 33.0, "ok"),  # pid 3 ran on for 2 s after its resume
        Run("twice", "n", 2, 50.0, 50.1, "ok"),
        Run("twice", "n", 2, 51.0, 51.1, "ok"),
        Run("faulted", "n", 4, 41.0, 41.1, "ok"),
        Run("faulted", "n", 2, 44.0, 44.1, "ok"),
        Run("resent", "n", 2, 62.0, 62.1, "ok"),  # enqueued while the producer's replies hung
        Run("resent", "n", 2, 66.0, 66.1, "ok"),
        Run("already-elsewhere", "n", 1, 8.0),  # running twice when its worker was killed
        Run("already-elsewhere", "n", 2, 9.9, 11.0, "ok"),
        Run("same-worker", "n", 4, 61.0, 61.5, "ok"),  # enqueued twice by a re-sent enqueue,
        Run("same-worker", "n", 4, 61.2, 61.6, "ok"),  # fetched twice by the same pool
        Run("unacked", "n", 1, 9.7, 9.9, "ok"),  # done, but its worker died before the ack
        Run("unacked", "n", 2, 13.0, 13.1, "ok"),
        Run("checkpointed", "n", 2, 70.0, 70.5, "stopped"),  # an iterable job its worker's stop
        Run("checkpointed", "n", 3, 70.6, 71.0, "ok"),  # suspended, resumed from its checkpoint
    ]
    a = analyse(runs, events, settled=())
    assert a.reruns["worker killed before its ack"] == 1
    assert a.recoveries == 2 and a.recovery_max == 3.5
    assert a.not_recovered == ["lost-with-pool"]
    assert a.reruns == {
        "worker killed": 1,
        "worker killed before its ack": 1,
        "after success, producer fault (enqueue re-sent?)": 1,
        "while still running (a double run)": 2,
        "retry": 1,
        "requeued at stop": 1,
        "worker frozen": 1,
        "after success, no fault": 2,  # "faulted": the fault hit another worker's connections
    }
    assert sorted(a.unexplained) == ["faulted", "twice"]
    # "frozen": its worker resumed at 30 and ran on to 31 while pid 2 ran it since 24;
    # "already-elsewhere": pid 2 started it while pid 1 (killed at 10) still ran it
    assert a.doubles == {
        "its worker was frozen, resumed and ran on": 1,
        "no fault found": 1,
        "the same worker ran it twice (enqueue re-sent?)": 1,
    }
    events.slots[4] = 2  # now the fault was on the first run's worker
    assert analyse(runs, events).reruns["after success, network or Redis fault"] == 1
    events.slots[1] = 2  # and on the worker killed at 10 (its connections cut at 40: too late)
    assert analyse(runs, events).doubles["no fault found"] == 1
    events.disturbed.append((2, 7.0, 10.0, "delay"))
    assert analyse(runs, events).doubles == {
        "its worker was frozen, resumed and ran on": 1,
        "its worker was cut off (delay), reaped while alive, and ran on": 1,
        "the same worker ran it twice (enqueue re-sent?)": 1,
    }
    assert analyse(runs, events, settled=["lost-with-pool"]).not_recovered == []


def test_runs_a_kill_or_a_freeze_met_are_counted_per_kind() -> None:
    events = Events(kills=[(1, 10.0), (2, 30.0)], frozen={3: [(20.0, 25.0), (40.0, 41.0)]})
    runs = [
        Run("d1", "dd", 1, 9.0),  # no end: killed with its worker
        Run("d2", "dd", 1, 9.5, 10.5, "ok"),  # still running at the kill (ended on record late)
        Run("d3", "dd", 1, 8.0, 10.0, "ok"),  # ended at the kill: not met
        Run("d4", "dd", 1, 10.1, 11.0, "ok"),  # started after it
        Run("d5", "dd", 4, 9.0, 11.0, "ok"),  # another worker
        Run("d6", "dd", 3, 19.0, 42.0, "ok"),  # met by both freezes of pid 3
        Run("i1", "ii", 2, 29.0),
        Run("i2", "ii", 3, 20.0, 21.0, "ok"),  # started at the freeze
        Run("o1", "other", 1, 9.0),  # not a covered kind
    ]
    got = in_flight(runs, events, {"dedup": "dd", "iterable": "ii"})
    assert got == {"dedup": {"killed": 2, "frozen": 2}, "iterable": {"killed": 1, "frozen": 1}}
    none = in_flight([], Events(), {"dedup": "dd"})
    assert none == {"dedup": {"killed": 0, "frozen": 0}}
