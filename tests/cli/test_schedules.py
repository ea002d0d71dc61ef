"""``python -m errands schedules ...`` (called in-process through ``errands.cli.main``)."""

from __future__ import annotations

import json

import pytest
import redis

from errands.cli import main
from errands.periodic.store import make_periodic
from errands.store.keys import Keys


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_schedules_commands(
    capsys: pytest.CaptureFixture[str], redis_url: str, namespace: str
) -> None:
    where = ("--redis", redis_url, "--namespace", namespace)
    assert run(capsys, "schedules", "list", *where)[1].strip() == "no schedules"

    code, out, _ = run(
        capsys,
        "schedules",
        "add",
        "nightly",
        "cleanup",
        "0 30 2 * * *",
        "--args",
        '{"deep": true}',
        "--tz",
        "America/New_York",
        "--skip-if-running",
        *where,
    )
    assert code == 0 and "nightly" in out

    code, out, _ = run(capsys, "schedules", "list", "--json", *where)
    [info] = json.loads(out)
    assert info["name"] == "nightly" and info["job_name"] == "cleanup"
    assert (info["spec"], info["tz"], info["args"]) == (
        "0 30 2 * * *",
        "America/New_York",
        {"deep": True},
    )
    assert info["enabled"] and info["skip_if_running"] and info["last_job_id"] is None

    assert run(capsys, "schedules", "disable", "nightly", *where)[0] == 0
    code, out, _ = run(capsys, "schedules", "list", *where)
    assert out.splitlines()[0].split()[:3] == ["NAME", "JOB", "SPEC"]
    assert "nightly" in out and " no " in out

    assert run(capsys, "schedules", "enable", "nightly", *where)[0] == 0
    code, out, _ = run(capsys, "schedules", "run-now", "nightly", *where)
    assert code == 0 and "enqueued" in out
    code, out, _ = run(capsys, "schedules", "list", "--json", *where)
    assert json.loads(out)[0]["last_outcome"] == "queued"

    assert run(capsys, "schedules", "delete", "nightly", *where)[0] == 0
    code, _, err = run(capsys, "schedules", "delete", "nightly", *where)
    assert code == 1 and "no schedule named 'nightly'" in err


def test_schedules_errors(
    capsys: pytest.CaptureFixture[str], redis_url: str, namespace: str
) -> None:
    where = ("--redis", redis_url, "--namespace", namespace)
    code, _, err = run(capsys, "schedules", "add", "x", "job", "61 * * * *", *where)
    assert code == 2 and "61 * * * *" in err
    code, _, err = run(capsys, "schedules", "add", "x", "0 3 * * *", "job", *where)  # swapped
    assert code == 2 and "invalid job name '0 3 * * *'" in err, err
    assert "errands schedules add NAME JOB SPEC" in err, err
    code, _, err = run(capsys, "schedules", "add", "x", "job", "@daily", "--args", "{", *where)
    assert code == 2 and "--args" in err
    code, _, err = run(capsys, "schedules", "enable", "ghost", *where)
    assert code == 1 and "ghost" in err
    code, _, err = run(capsys, "schedules", "list", "--redis", "redis://127.0.0.1:9/0")
    assert code == 2 and "cannot reach Redis at redis://127.0.0.1:9/0" in err


def test_a_schedule_no_pool_registers_any_more_is_listed_stale(
    capsys: pytest.CaptureFixture[str], redis_url: str, namespace: str
) -> None:
    """A deploy removed "nightly" from the code: `list` said it was on, for ever."""
    keys = Keys(namespace)
    nightly = make_periodic("0 3 * * *", "cleanup", name="nightly")
    registered_until = 1_767_225_660_000  # 2026-01-01T00:01:00Z: its pools stopped then
    with redis.Redis.from_url(redis_url) as r:
        r.hset(keys.code_schedules, "nightly", nightly.to_json())
        r.zadd(keys.code_schedules_live, {"nightly": registered_until})
    where = ("--redis", redis_url, "--namespace", namespace)
    _, out, _ = run(capsys, "schedules", "list", *where)
    [row] = [line.split() for line in out.splitlines() if line.startswith("nightly")]
    assert row[-6:-4] == ["code", "stale"]  # SOURCE, ON
    _, out, _ = run(capsys, "schedules", "list", "--json", *where)
    [info] = json.loads(out)
    assert (info["stale"], info["registered_until"]) == (True, registered_until / 1000)
    assert run(capsys, "schedules", "delete", "nightly", *where)[0] == 0
    assert run(capsys, "schedules", "list", *where)[1].strip() == "no schedules"


def test_a_corrupt_schedule_state_is_listed_corrupt(
    capsys: pytest.CaptureFixture[str], redis_url: str, namespace: str
) -> None:
    """A state whose `last` is no fire time (written by hand, a bad restore): listed, as
    corrupt, with what is stored (tests/periodic/test_corrupt_state.py)."""
    keys = Keys(namespace)
    nightly = make_periodic("0 3 * * *", "cleanup", name="nightly")
    with redis.Redis.from_url(redis_url) as r:
        r.hset(keys.schedules, "nightly", nightly.to_json())
        r.hset(keys.schedule_state("nightly"), mapping={"last": "abc", "next": "1.5e3"})
    where = ("--redis", redis_url, "--namespace", namespace)
    _, out, _ = run(capsys, "schedules", "list", *where)
    [row] = [line.split() for line in out.splitlines() if line.startswith("nightly")]
    assert row[-6:-4] == ["runtime", "corrupt"]  # SOURCE, ON
    _, out, _ = run(capsys, "schedules", "list", "--json", *where)
    [info] = json.loads(out)
    assert info["corrupt"] and info["raw"] == {"last": "abc", "next": "1.5e3"}
    assert info["next_fire"] is None
    # a bad `next` alone: it fires (pools do not read it), listed in raw only, ON says yes
    with redis.Redis.from_url(redis_url) as r:
        r.hdel(keys.schedule_state("nightly"), "last")
    _, out, _ = run(capsys, "schedules", "list", *where)
    [row] = [line.split() for line in out.splitlines() if line.startswith("nightly")]
    assert row[-6:-4] == ["runtime", "yes"]
    _, out, _ = run(capsys, "schedules", "list", "--json", *where)
    [info] = json.loads(out)
    assert not info["corrupt"] and info["raw"] == {"next": "1.5e3"}
