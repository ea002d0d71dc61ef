"""Cron evaluation: speed of ``Schedule.next_fire`` and correctness against the reference of
``tests/periodic/test_cron_differential.py``, for whichever errands is on ``PYTHONPATH``.

    PYTHONPATH=src:. python bench/cron.py                  # this tree
    PYTHONPATH=/path/to/old/src:. python bench/cron.py      # another tree (e.g. croniter's)

Needs the ``dev`` extra (cronsim). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time

from tests.periodic.test_cron_differential import cases, six
from tests.support.cron_reference import reference_fires

from errands import RegistrationError
from errands.periodic.spec import parse_schedule

SPECS = [
    ("*/5 * * * *", "UTC"),
    ("0 3 * * *", "UTC"),
    ("30 2 * * *", "America/New_York"),
    ("@hourly", "Europe/Berlin"),
    ("0 */15 9-17 * * MON-FRI", "Europe/Berlin"),
    ("0 0 1 * *", "UTC"),
    ("*/10 * * * * *", "UTC"),
    ("15 10 * * 1-5", "Australia/Lord_Howe"),
]


def speed(calls: int, repeats: int) -> dict[str, float]:
    rng = random.Random(1)
    instants = [rng.uniform(1_767_225_600, 1_798_761_600) for _ in range(calls)]  # 2026
    out = {}
    for spec, tz in SPECS:
        schedule = parse_schedule(spec, tz=tz)
        best = []
        for _ in range(repeats):
            start = time.perf_counter()
            for t in instants:
                schedule.next_fire(t)
            best.append((time.perf_counter() - start) / calls * 1e6)
        out[f"{spec} [{tz}]"] = round(min(best), 2)
    start = time.perf_counter()
    for _ in range(200):
        for spec, tz in SPECS:
            parse_schedule(spec, tz=tz)
    out["parse_schedule (mean)"] = round((time.perf_counter() - start) / 200 / len(SPECS) * 1e6, 2)
    return out


def correctness(limit: int) -> dict[str, int]:
    """Cases whose next 4 fire times differ from the reference: UTC only (the fields), and
    every zone (the fields and the daylight-saving policy of docs/periodic.md)."""
    counts = {"cases": 0, "utc_cases": 0, "differ": 0, "utc_differ": 0, "refused": 0}
    for spec, tz, after in cases()[:limit]:
        try:
            schedule = parse_schedule(spec, tz=tz)
        except RegistrationError:
            counts["refused"] += 1
            continue
        ours, t = [], after
        for _ in range(4):
            t = schedule.next_fire(t)
            ours.append(t)
        same = ours == reference_fires(six(spec), tz, after, 4)
        counts["cases"] += 1
        counts["differ"] += not same
        if tz == "UTC":
            counts["utc_cases"] += 1
            counts["utc_differ"] += not same
    return counts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cases", type=int, default=3000)
    args = parser.parse_args()
    per_call = speed(args.calls, args.repeats)
    result = {
        "next_fire_us": per_call,
        "next_fire_us_median": statistics.median(
            v for k, v in per_call.items() if not k.startswith("parse")
        ),
        "correctness": correctness(args.cases),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
