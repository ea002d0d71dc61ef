"""A job enqueued with ``dedup=`` (or fired by a schedule with a Dedup) records its Dedup in its
envelope (``x``: the mode letter, then the key), kept through the worker's rebuild of the job;
``key_again`` reads it back for the admin actions that put a dead or cancelled job back to wait
(admin/relock.py, tests/dedup/test_rerun_by_hand.py)."""

from __future__ import annotations

from datetime import timedelta

import orjson
import pytest
from redis.asyncio import Redis

from errands import Dedup, Enqueuer
from errands.admin.relock import NO_KEY, key_again
from errands.job import Job
from errands.periodic.store import build_job, make_periodic
from errands.store.keys import Keys

MODES = [
    (Dedup("user:7"), "s"),
    (Dedup("user:7", debounce=True), "d"),
    (Dedup("user:7", until="finished"), "f"),
    (Dedup("user:7", until="finished", rerun_latest=True), "r"),
    (Dedup("user:7", throttle=30), "t"),
]


@pytest.mark.parametrize(("dedup", "letter"), MODES)
async def test_an_enqueue_records_its_dedup_in_the_envelope(
    redis: Redis, namespace: str, enqueuer: Enqueuer, dedup: Dedup, letter: str
) -> None:
    job = await enqueuer.enqueue("sync", {"id": 7}, delay=60, dedup=dedup)
    assert job is not None and job.dedup is not None and job.dedup.enqueued
    raw = await redis.hget(Keys(namespace).jobs, job.id)
    assert raw is not None and orjson.loads(raw)["x"] == letter + "user:7"
    again = Job.from_envelope(job.id, orjson.loads(raw))
    assert again._dk == letter + "user:7" and again.envelope()["x"] == letter + "user:7"
    expected = NO_KEY if letter == "t" else (letter, "sync:user:7")
    assert key_again(raw, "sync") == expected


async def test_a_plain_enqueue_records_nothing(
    redis: Redis, namespace: str, enqueuer: Enqueuer
) -> None:
    job = await enqueuer.enqueue("sync", {"id": 7}, delay=60)
    assert job is not None
    raw = await redis.hget(Keys(namespace).jobs, job.id)
    assert raw is not None and "x" not in orjson.loads(raw)
    assert key_again(raw, "sync") == NO_KEY


def test_a_scheduled_run_records_the_schedules_dedup() -> None:
    periodic = make_periodic(timedelta(minutes=5), "report", dedup=Dedup("n", until="finished"))
    assert build_job(periodic, 10.0, fire_time=10.0).envelope()["x"] == "fn"
    plain = make_periodic(timedelta(minutes=5), "report")
    assert "x" not in build_job(plain, 10.0, fire_time=10.0).envelope()


@pytest.mark.parametrize(
    "raw",
    [
        None,
        b"",
        b"not json",
        b"[1]",
        b'{"x": 5}',
        b'{"x": ""}',
        b'{"x": "f"}',  # (no key)
        b'{"x": "tk"}',  # (a throttle: no key held while waiting)
        b'{"x": "nk"}',  # (not a mode an enqueue records)
        b'{"x": "fa{b}"}',  # (a key no Dedup takes)
        b'{"x": "Fk"}',
    ],
)
def test_no_key_for_an_envelope_without_a_valid_record(raw: bytes | None) -> None:
    assert key_again(raw, "sync") == NO_KEY


def test_the_key_taken_again_is_scoped_by_the_job_name() -> None:
    assert key_again(b'{"x": "dk:1"}', "notify") == ("d", "notify:k:1")
    assert key_again(b'{"u": "d1", "x": "sk"}', "n") == ("s", "n:k")
