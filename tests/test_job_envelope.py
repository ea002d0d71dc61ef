"""Job.from_envelope: the short paths of an envelope of name, args and time only (and of one with a
partition besides) give the same Job as the general one; envelopes of as many fields but others
are still checked. Job.checkin's message as text."""

from __future__ import annotations

import enum
import math

import pytest

from errands.job import Job, job_from_envelope

FIELDS = ("name", "args", "id", "enqueued_at", "priority", "fails", "retry", "unique", "run_at")
MORE = ("previous_attempts", "workflow_id", "timeout", "partition", "snoozes", "meta")


def _fields(job: Job) -> tuple[object, ...]:
    return tuple(getattr(job, f) for f in FIELDS + MORE)


def test_a_minimal_envelope_rebuilds_the_job_it_came_from() -> None:
    job = Job("send", {"to": "a"}, id="j1", enqueued_at=12.5)
    env = job.envelope()
    assert sorted(env) == ["a", "n", "t"]
    again = Job.from_envelope("j1", env)
    assert _fields(again) == _fields(job)
    assert again.envelope() == env
    assert type(Job.from_envelope("j1", {"n": "send", "a": {}, "t": 3}).enqueued_at) is float


def test_a_full_envelope_rebuilds_the_job_it_came_from() -> None:
    job = Job(
        "send", {"to": "a"}, id="j2", enqueued_at=1.0, priority=3, fails=1,
        retry={"max_fails": 4}, meta={"trace": "x"}, unique="u", run_at=9.0,
        previous_attempts=2, workflow=("w", "n"), timeout=2.5, partition="p", snoozes=1,
    )  # fmt: skip
    again = Job.from_envelope("j2", job.envelope())
    assert _fields(again) == _fields(job)


def test_three_fields_other_than_the_time_are_still_checked() -> None:
    with pytest.raises(ValueError, match="timeout"):
        Job.from_envelope("i", {"n": "x", "a": {}, "o": "soon"})
    with pytest.raises(ValueError, match="retry"):
        Job.from_envelope("i", {"n": "x", "a": {}, "r": 5})
    assert Job.from_envelope("i", {"n": "x", "a": {}, "p": 4}).enqueued_at == 0.0


def test_a_partitioned_envelope_rebuilds_the_job_it_came_from() -> None:
    job = Job("charge", {"o": 9}, id="j3", enqueued_at=4.0, partition="customer:7")
    env = job.envelope()
    assert sorted(env) == ["a", "k", "n", "t"]
    again = Job.from_envelope("j3", env)
    assert _fields(again) == _fields(job)
    assert again.envelope() == env
    assert type(Job.from_envelope("j3", {"n": "x", "a": {}, "t": 3, "k": "p"}).enqueued_at) is float


def test_four_fields_with_a_partition_but_no_time_are_still_checked() -> None:
    with pytest.raises(ValueError, match="timeout"):
        Job.from_envelope("i", {"n": "x", "a": {}, "o": "soon", "k": "p"})
    assert Job.from_envelope("i", {"n": "x", "a": {}, "p": 4, "k": "p"}).priority == 4


@pytest.mark.parametrize("partition", [None, "customer:7"])
def test_the_short_paths_set_every_attribute_as_init_does(partition: str | None) -> None:
    """The short paths (a job made without __init__'s keyword arguments) set each slot to what
    __init__ sets: a slot added to one and not the other fails here."""
    made = Job("send", {"to": "a"}, id="j4", enqueued_at=2.0, partition=partition)
    env = {"n": "send", "a": {"to": "a"}, "t": 2.0}
    if partition is not None:
        env["k"] = partition
    plain = job_from_envelope("j4", env)
    for slot in Job.__slots__:
        assert getattr(plain, slot) == getattr(made, slot), slot
        assert type(getattr(plain, slot)) is type(getattr(made, slot)), slot


class _NoInit(Job):
    __slots__ = ()

    def __init__(self, *args: object, **kwargs: object) -> None:  # (short paths: not called)
        raise AssertionError("the general path")


@pytest.mark.parametrize("partition", [None, "customer:7"])
def test_a_dedup_jobs_envelope_takes_the_short_path(partition: str | None) -> None:
    """A job enqueued with dedup= records its Dedup (``x``): its envelope still takes the short
    path (as it did before the record), every slot as __init__ sets it."""
    made = Job("send", {"to": "a"}, id="j5", enqueued_at=2.0, partition=partition)
    made._dk = "fkey:1"
    env = made.envelope()
    assert "x" in env
    short = job_from_envelope("j5", env, _NoInit)
    for slot in Job.__slots__:
        assert getattr(short, slot) == getattr(made, slot), slot
    assert job_from_envelope("j5", env | {"x": 5}, Job)._dk is None  # (not a record: none)


class _Color(enum.StrEnum):
    RED = "red"


class _Backend:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def checkin(self, job: Job, message: str) -> bool:
        self.sent.append(message)
        return True


@pytest.mark.parametrize(
    ("message", "text"),
    [
        ("as is", "as is"),
        ({"progress": "11%", "file": "é.mp4"}, '{"progress": "11%", "file": "é.mp4"}'),
        ([1, "a"], '[1, "a"]'),
        ({"at": math.nan}, "{'at': nan}"),  # (not JSON data: str())
        ([object], f"[{object!r}]"),
        (True, "True"),
        (None, "None"),
        ((1, 2), "(1, 2)"),
        (3, "3"),
        (2.5, "2.5"),
        (_Color.RED, "red"),  # (a str itself, not the member: JSON, pickles, == str)
    ],
)
async def test_a_checkin_stores_a_dict_or_a_list_as_json_and_the_rest_as_str(
    message: object, text: str
) -> None:
    """Only a dict or a list is stored as its JSON text; True, None, a tuple, a str subclass
    read "true", "null", "[1, 2]" and the member itself (not str()) when all but str were."""
    job = Job("send", {}, id="j1", enqueued_at=1.0)
    job._backend = backend = _Backend()
    assert await job.checkin(message)
    assert backend.sent == [text] and type(backend.sent[0]) is str
