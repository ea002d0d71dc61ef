"""The dedup soak's oracle sees each kind of broken promise, and none in a clean history."""

from __future__ import annotations

import orjson

from .soak_oracle import Call, Run, check, parse_runs


def call(mode: str, seq: int, send: float, status: str, carrier: str, key: str = "k") -> Call:
    return Call(mode, key, seq, send, send + 0.01, status, carrier, carrier)


def run(job: str, mode: str, seq: int, start: float, end: float | None, key: str = "k") -> Run:
    return Run(job, mode, key, seq, 1, start, end)


def test_a_clean_history_has_no_violation() -> None:
    calls = [
        call("finished", 1, 0.0, "enqueued", "a"),
        call("finished", 2, 0.5, "dropped", "a"),
        call("finished", 3, 3.0, "enqueued", "b"),
        call("throttle", 4, 0.0, "enqueued", "t1", "t"),
        call("throttle", 5, 0.5, "dropped", "t1", "t"),
        call("throttle", 6, 1.2, "enqueued", "t2", "t"),
        call("rerun", 7, 0.0, "enqueued", "r1", "r"),
        call("rerun", 8, 1.5, "rerun_queued", "r2", "r"),
        call("rerun", 9, 1.6, "rerun_queued", "r2", "r"),
    ]
    runs = [
        run("a", "finished", 1, 1.0, None),  # killed
        run("a", "finished", 1, 2.0, 2.5),
        run("b", "finished", 3, 3.5, 4.0),
        run("t1", "throttle", 4, 0.1, 0.2, "t"),
        run("t2", "throttle", 6, 1.3, 1.4, "t"),
        run("r1", "rerun", 7, 1.0, 2.0, "r"),
        run("r2", "rerun", 9, 2.1, 2.2, "r"),
    ]
    assert check(calls, runs, window=1.0) == []


def test_each_broken_promise_is_seen() -> None:
    two_live = check(
        [call("finished", 1, 0.0, "enqueued", "a"), call("finished", 2, 0.5, "enqueued", "b")],
        [run("a", "finished", 1, 0.1, 1.0), run("b", "finished", 2, 0.6, 0.7)],
        1.0,
    )
    assert any("accepted while a was live" in v for v in two_live)
    assert any("started while a ran" in v for v in two_live)
    throttled = check(
        [call("throttle", 1, 0.0, "enqueued", "a"), call("throttle", 2, 0.3, "enqueued", "b")],
        [run("a", "throttle", 1, 0.1, 0.2), run("b", "throttle", 2, 0.4, 0.5)],
        1.0,
    )
    assert any("in one window" in v for v in throttled)
    stale = check(
        [call("debounce", 1, 0.0, "enqueued", "a"), call("debounce", 2, 0.5, "replaced", "a")],
        [run("a", "debounce", 1, 1.0, 1.1)],
        1.0,
    )
    assert any("overwritten by seq 2" in v for v in stale)
    lost = check([call("started", 1, 0.0, "enqueued", "a")], [], 1.0)
    assert any("never ran" in v for v in lost)
    burst = check(
        [
            call("rerun", 1, 0.0, "enqueued", "a"),
            call("rerun", 2, 0.5, "rerun_queued", "b"),
            call("rerun", 3, 0.6, "rerun_queued", "c"),
        ],
        [
            run("a", "rerun", 1, 0.1, 1.0),
            run("b", "rerun", 2, 1.1, 1.2),
            run("c", "rerun", 3, 1.3, 1.4),
        ],
        1.0,
    )
    assert any("2 jobs started after the last call" in v for v in burst)


def test_runs_are_read_from_the_apps_records() -> None:
    entry = {"id": "a", "name": "rerun", "key": "k", "seq": 3, "pid": 7, "start": 1.0}
    raw = [
        orjson.dumps(entry),
        orjson.dumps({**entry, "end": 2.0}),
        orjson.dumps(entry | {"pid": 8}),
    ]
    assert parse_runs(raw) == [
        Run("a", "rerun", "k", 3, 7, 1.0, 2.0),
        Run("a", "rerun", "k", 3, 8, 1.0, None),
    ]
