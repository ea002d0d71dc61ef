"""The soak's checks of the deduplicated and the iterable job types (``tests/soak/dedupcheck.py``,
``itercheck.py``) on made-up logs: a violation is caught, its absence is not reported; and the
load's draws replay from a seed."""

from __future__ import annotations

import random
from typing import Any

import orjson
from redis.asyncio import Redis

from errands.store.keys import Keys
from tests.support.invariants import OracleLog, Run

from .dedupcheck import DedupCall, KeyedRun, check_dedup, parse_keyed_runs
from .itercheck import IterRun, check_iterable, parse_iter_runs
from .leaks import dedup_key_leaks
from .load import dedup_burst, iterable_args

DEDUP = "soak_dedup"
ITER = "soak_iter"


def _kr(job: str, seq: int, pid: int, start: float, end: float | None, ok: str = "ok") -> KeyedRun:
    return KeyedRun(Run(job, DEDUP, pid, start, end, ok if end is not None else ""), "k0", seq)


def _call(seq: int, send: float, status: str, carrier: str) -> DedupCall:
    holder = carrier if status != "rerun_queued" else "h?"
    return DedupCall("k0", seq, send, send + 0.01, status, carrier, holder)


def _checks(report: Any) -> list[str]:
    return sorted(c for c, _d in report.violations)


# a clean history of key k0: a enqueued, replaced while waiting; b queued as a's rerun, replaced
# while waiting; a killed once (pid 1, no end, exit at 3.0), run again; then b; then c
CALLS = [
    _call(0, 0.0, "enqueued", "a"),
    _call(1, 0.5, "replaced", "a"),
    _call(2, 2.0, "rerun_queued", "b"),
    _call(3, 4.0, "rerun_queued", "b"),
    _call(4, 9.0, "enqueued", "c"),
]
RUNS = [
    _kr("a", 1, 1, 1.0, None),  # its worker was killed at 3.0
    _kr("a", 1, 2, 6.0, 7.0),
    _kr("b", 3, 2, 7.5, 8.0),
    _kr("c", 4, 3, 9.5, 9.7),
]
LOG = OracleLog(exits={1: 3.0}, frozen={3: [(20.0, 25.0)]}, resume_allowance=1.0)


def test_parse_keyed_runs_reads_the_key_and_the_seq() -> None:
    e = {"id": "a", "name": DEDUP, "pid": 1, "start": 10.0, "key": "k1", "seq": 4}
    raw = [orjson.dumps(e), orjson.dumps({**e, "end": 10.5, "outcome": "ok"})]
    raw.append(orjson.dumps({"id": "c", "name": "other", "pid": 1, "start": 1.0}))
    assert parse_keyed_runs(raw, DEDUP, t0=10.0) == [
        KeyedRun(Run("a", DEDUP, 1, 0.0, 0.5, "ok"), "k1", 4)
    ]


def test_a_clean_dedup_history_passes() -> None:
    report = check_dedup(CALLS, RUNS, LOG)
    assert report.violations == []
    assert report.figures["dedup_calls"] == {"enqueued": 2, "replaced": 1, "rerun_queued": 2}
    # a frozen worker's run overlapping the next job only while frozen (and the allowance)
    frozen = [_kr("d", 5, 3, 19.0, 25.5), _kr("e", 6, 2, 21.0, 25.9)]
    calls = [*CALLS, _call(5, 18.0, "enqueued", "d"), _call(6, 20.5, "rerun_queued", "e")]
    assert check_dedup(calls, [*RUNS, *frozen], LOG).violations == []


def test_two_jobs_of_a_key_at_once_are_caught() -> None:
    runs = [*RUNS[:2], _kr("b", 3, 3, 6.5, 8.0), RUNS[3]]  # b while a ran
    report = check_dedup(CALLS, runs, LOG)
    assert _checks(report) == ["dedup-concurrency"]
    assert "two jobs ran at once at 6.500" in report.violations[0][1]
    runs = [*RUNS[:2], _kr("b", 3, 3, 2.5, 2.8), RUNS[3]]  # b while a ran (killed at 3.0)
    assert "dedup-concurrency" in _checks(check_dedup(CALLS, runs, LOG))


def test_a_call_that_never_ran_or_ran_stale_args_is_caught() -> None:
    report = check_dedup(CALLS, [r for r in RUNS if r.run.job_id != "b"], LOG)
    assert "dedup-run" in _checks(report)
    assert any("job b (calls [2, 3]) never succeeded" in d for _c, d in report.violations)
    stale = [RUNS[0], _kr("a", 0, 2, 6.0, 7.0), *RUNS[2:]]  # replaced by seq 1 at 0.51
    report = check_dedup(CALLS, stale, LOG)
    assert _checks(report) == ["dedup-args", "dedup-args"]  # two seqs; the older one
    assert "replaced by seq 1" in report.violations[1][1]
    foreign = [*RUNS[:2], _kr("b", 4, 2, 7.5, 8.0), RUNS[3]]  # seq 4 was c's
    assert _checks(check_dedup(CALLS, foreign, LOG)) == ["dedup-args"]
    failed = [*RUNS[:3], _kr("c", 4, 3, 9.5, 9.7, "error")]
    assert "dedup-run" in _checks(check_dedup(CALLS, failed, LOG))
    assert check_dedup(CALLS, failed, LOG, dead=["c"]).violations == []


def test_the_last_args_not_run_last_are_caught() -> None:
    late = [*CALLS, _call(5, 9.8, "rerun_queued", "d")]  # d never ran
    report = check_dedup(late, RUNS, LOG)
    assert _checks(report) == ["dedup-latest", "dedup-run"]
    # the last call's job started before it was sent (a run of older args)
    early = [*CALLS[:4], _call(4, 9.6, "enqueued", "c")]
    assert _checks(check_dedup(early, RUNS, LOG)) == ["dedup-latest"]
    # two jobs started after the last reply
    extra = [*RUNS, _kr("x", 4, 3, 9.8, 9.9)]
    assert "dedup-latest" in _checks(check_dedup(CALLS, extra, LOG))
    # a last rerun_queued whose holder (taken by a pool before the reply: handed to an idle
    # pool by its own enqueue, seed 105) recorded its start after the reply, then its rerun
    taken = [*CALLS[:4], _call(4, 9.0, "enqueued", "c"), DedupCall("k0", 5, 9.02, 9.03,
             "rerun_queued", "d", "c")]  # fmt: skip
    runs = [*RUNS[:3], _kr("c", 4, 3, 9.04, 9.5), _kr("d", 5, 3, 9.6, 9.8)]
    assert check_dedup(taken, runs, LOG).violations == []
    assert "dedup-latest" in _checks(check_dedup(taken, [*runs, _kr("x", 5, 3, 9.9, 9.95)], LOG))
    # a last call whose reply was lost: its args or the last answered call's may run last
    lost = [*CALLS, DedupCall("k0", 5, 9.2, 11.0)]
    assert check_dedup(lost, RUNS, LOG).violations == []


def test_iterable_runs_are_paired_with_their_items() -> None:
    e = {"id": "j", "name": ITER, "pid": 1, "start": 100.0, "cursor": None, "items": 3}
    raw_runs = [orjson.dumps(e), orjson.dumps({**e, "end": 101.0, "outcome": "ok"})]
    raw_items = [
        orjson.dumps({"id": "j", "pid": 1, "start": 100.0, "item": i, "at": 100.1 + i / 10})
        for i in range(3)
    ]
    raw_items.append(orjson.dumps({"id": "j", "pid": 2, "start": 100.0, "item": 0, "at": 1.0}))
    (run,) = parse_iter_runs(raw_runs, raw_items, ITER, t0=100.0)
    assert run.run == Run("j", ITER, 1, 0.0, 1.0, "ok") and run.cursor is None
    assert run.items == 3 and [i for _t, i in run.done] == [0, 1, 2]


def _ir(pid: int, start: float, end: float | None, cursor: int | None, items: range,
        outcome: str = "ok", n: int = 6) -> IterRun:  # fmt: skip
    done = tuple((start + 0.1 * (k + 1), i) for k, i in enumerate(items))
    return IterRun(Run("j", ITER, pid, start, end, outcome if end else ""), cursor, n, done)


# killed at 3.0 (pid 1) after items 0-3, checkpointed at item 1: resumed from 1, replays 2-3
ITER_RUNS = [_ir(1, 2.0, None, None, range(4)), _ir(2, 4.0, 5.0, 1, range(2, 6))]


def test_a_clean_iterable_history_passes() -> None:
    report = check_iterable(ITER_RUNS, LOG, required=["j"])
    assert report.violations == []
    assert report.figures["iter_items_done"] == 6 and report.figures["iter_items_replayed"] == 2
    assert report.figures["iter_resumes"] == 1


def test_an_item_skipped_on_resume_is_caught() -> None:
    skip = [ITER_RUNS[0], _ir(2, 4.0, 5.0, 4, range(5, 6))]  # resumed past item 3 (4 not done)
    report = check_iterable(skip, LOG, required=["j"])
    assert _checks(report) == ["iter-missing", "iter-skip"]
    assert "items [4] were not done before" in report.violations[0][1]


def test_an_incomplete_or_out_of_order_run_is_caught() -> None:
    short = [ITER_RUNS[0], _ir(2, 4.0, 5.0, 1, range(2, 5))]  # succeeded without item 5
    assert _checks(check_iterable(short, LOG)) == ["iter-incomplete"]
    assert "iter-missing" in _checks(check_iterable(short, LOG, required=["j"]))
    gap = [ITER_RUNS[0], _ir(2, 4.0, 5.0, 1, range(2, 7, 2))]
    assert "iter-order" in _checks(check_iterable(gap, LOG))
    never = [ITER_RUNS[0]]
    assert _checks(check_iterable(never, LOG, required=["j"])) == ["iter-missing"]
    cut = [_ir(1, 2.0, None, None, range(6))]  # every item done, but killed before its success
    report = check_iterable(cut, LOG, required=["j"])
    assert report.violations == [("iter-missing", "j: never succeeded")]
    assert check_iterable(never, LOG).violations == []  # cancelled, say: not required


def test_two_runs_of_an_iterable_job_at_once_are_caught() -> None:
    both = [ITER_RUNS[0], _ir(2, 2.9, 5.0, 1, range(2, 6))]  # before pid 1 was killed at 3.0
    report = check_iterable(both, LOG)
    assert _checks(report) == ["iter-overlap"]
    frozen = [_ir(3, 19.0, 27.0, None, range(2), "stopped"), _ir(2, 22.0, 25.9, 1, range(2, 6))]
    assert check_iterable(frozen, LOG).violations == []  # pid 3 frozen 20-25 (+1 s allowance)


async def test_dedup_records_left_are_leaks(redis: Redis, namespace: str) -> None:
    keys = Keys(namespace)
    assert await dedup_key_leaks(redis, keys, DEDUP, ["k0", "k1"], ["a", "b"]) == []
    await redis.hset(keys.dedup, f"{DEDUP}:k1", "a")
    await redis.hset(keys.dedup_of_job, "a", f"R{DEDUP}:k1")
    await redis.hset(keys.dedup_next, f"{DEDUP}:k1", "b")
    await redis.zadd(keys.dedup_reruns, {"b": 1})
    await redis.set(keys.dedup_window(f"{DEDUP}:k0"), "x", px=60_000)
    leaks = await dedup_key_leaks(redis, keys, DEDUP, ["k0", "k1"], ["a", "b"])
    assert len(leaks) == 5 and all(keys.prefix in leak for leak in leaks)
    assert f"{keys.dedup} {DEDUP}:k1 -> b'a'" in leaks


def test_the_dedup_and_iterable_draws_replay_from_a_seed() -> None:
    def draws(seed: int) -> list[Any]:
        rng = random.Random(seed)
        return [(dedup_burst(rng, n), iterable_args(rng)) for n in range(50)]

    assert draws(7) == draws(7) and draws(7) != draws(8)
    for burst, it in draws(7):
        assert 1 <= len(burst) <= 4 and len({args["key"] for args in burst}) == 1
        assert all(args["key"] in {"k0", "k1", "k2"} and args["fail"] in (0, 1) for args in burst)
        assert -1 <= it["fail_at"] < it["items"]
