"""Invalid input to every command is one ``errands: ...`` line on stderr and exit status 2,
never a traceback; ``--args`` refuses NaN and keeps big integers exact or refuses them; typos
of job names are not silent no-ops. In-process (``main``), against a real Redis."""

from __future__ import annotations

import asyncio

import pytest
import redis

from errands import Enqueuer, Job, WorkerPool
from errands.cli.commands import main
from errands.store.keys import Keys

Capture = pytest.CaptureFixture[str]


class Run:
    def __init__(self, capsys: Capture, redis_url: str, namespace: str) -> None:
        self.capsys, self.where = capsys, ("--redis", redis_url, "--namespace", namespace)

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        code = main([*argv, *self.where])
        got = self.capsys.readouterr()
        return code, got.out, got.err

    def refused(self, *argv: str, needle: str, code: int = 2) -> None:
        got, _out, err = self(*argv)
        lines = err.strip().splitlines()
        assert got == code and len(lines) == 1, (got, err)
        assert lines[0].startswith("errands: ") and needle in lines[0], err


@pytest.fixture
def run(capsys: Capture, redis_url: str, namespace: str) -> Run:
    return Run(capsys, redis_url, namespace)


@pytest.fixture
def store(redis_url: str) -> redis.Redis:
    r = redis.Redis.from_url(redis_url)
    yield r
    r.close()


BIG = "99999999999999999999999"


def test_args_with_integers_past_64_bits_are_refused_not_rounded(
    run: Run, store: redis.Redis, namespace: str
) -> None:
    run.refused("enqueue", "a", "--args", f'{{"x": {BIG}}}', needle=f"integer {BIG} is outside")
    run.refused("enqueue", "a", "--args", f'{{"x": [-{BIG}]}}', needle="outside the 64-bit")
    assert store.hlen(Keys(namespace).jobs) == 0
    code, out, _ = run(
        "enqueue", "a", "--args", '{"x": 18446744073709551615, "y": -9223372036854775808}'
    )
    assert code == 0
    raw = store.hget(Keys(namespace).jobs, out.strip())
    assert raw is not None and b'"x":18446744073709551615,"y":-9223372036854775808' in raw
    job_id = out.strip()
    run.refused("edit", job_id, "--args", f'{{"x": {BIG}}}', needle="outside the 64-bit range")
    assert raw == store.hget(Keys(namespace).jobs, job_id)


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_args_with_nan_or_infinity_are_refused_by_enqueue_edit_and_schedules_add(
    run: Run, store: redis.Redis, namespace: str, bad: str
) -> None:
    run.refused("enqueue", "a", "--args", f'{{"x": {bad}}}', needle="--args")
    run.refused("edit", "some-id", "--args", f'{{"x": {bad}}}', needle="--args")
    add = ("schedules", "add", "s1", "a", "@every 1h", "--args", f'{{"x": {bad}}}')
    run.refused(*add, needle="--args")
    assert store.hlen(Keys(namespace).jobs) == 0
    assert run("schedules", "list")[1].strip() == "no schedules"


def test_a_huge_delay_is_refused_clearly(run: Run, store: redis.Redis, namespace: str) -> None:
    run.refused("enqueue", "a", "--in", "9" * 400, needle="--in must be a number of seconds")
    run.refused("enqueue", "a", "--in", "9" * 20 + "h", needle="--in must be")
    assert store.hlen(Keys(namespace).jobs) == 0


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (("schedules", "enable", "a{b}"), "must not contain braces"),
        (("schedules", "disable", ""), "non-empty string"),
        (("schedules", "add", "s1", "a", "@every " + "9" * 400 + "s"), "@every"),
        (("limits", "set", "a b", "rate=1/1s"), "invalid job name 'a b'"),
        (("limits", "clear", "a b"), "invalid job name 'a b'"),
        (("workflows", "show", "a{b}"), "must not contain braces"),
        (("workflows", "show", ""), "non-empty string"),
        (("workflows", "cancel", "a{b}"), "must not contain braces"),
        (("workflows", "list", "--limit", "0"), "limit must be an int in 1"),
        (("workflows", "list", "--limit", "-1"), "limit must be an int in 1"),
        (("inspect", "history", "--job-name", ""), "invalid job name ''"),
    ],
)
def test_invalid_input_is_one_line_and_status_2(
    run: Run, argv: tuple[str, ...], needle: str
) -> None:
    run.refused(*argv, needle=needle)


def test_a_page_past_the_end_is_empty(run: Run) -> None:
    assert run("enqueue", "a", "--in", "1h")[0] == 0
    for kind in ("scheduled", "dead", "history"):
        code, out, err = run("inspect", kind, "--page", BIG, "--json")
        assert (code, out.strip(), err) == (0, "[]", ""), (kind, err)


def test_unpause_of_an_unknown_name_is_refused_unless_forced(run: Run) -> None:
    run.refused("unpause", "nope", needle="no job type 'nope'", code=1)
    run.refused("unpause", "", needle="invalid job name ''", code=2)
    assert run("unpause", "nope", "--force")[0] == 0
    assert run("pause", "later", "--force")[0] == 0  # (a paused name is known)
    assert run("unpause", "later")[:2] == (0, "unpaused later\n")


def test_limits_of_unknown_names_warn_and_clearing_nothing_says_so(run: Run) -> None:
    """Clearing limits not set is no error (status 0: a deploy script may clear every time; it
    exited 1), and says so; a name that looks like a typo gets a warning with a hint."""
    code, _out, err = run("limits", "set", "typo_never_seen", "concurrency=1")
    assert code == 0 and "warning: no job type 'typo_never_seen'" in err
    assert "apply once a pool serves it" in err
    assert run("limits", "clear", "typo_never_seen")[:2] == (
        0,
        "typo_never_seen: back to the limits in code\n",
    )
    nothing = ": no limits set at run time, nothing to clear (the limits in code apply)\n"
    code, out, err = run("limits", "clear", "typo_never_seen")  # (again: still no job type)
    assert (code, out) == (0, "typo_never_seen" + nothing)
    assert err.startswith("errands: warning: no job type 'typo_never_seen' in namespace ")
    assert err.endswith("(nothing to clear; limits set at run time: none)\n")
    assert run("enqueue", "send_sms", "--in", "1h")[0] == 0  # (a known name)
    assert run("limits", "set", "send_email", "rate=5/1s")[0] == 0
    assert run("limits", "clear", "send_sms") == (0, "send_sms" + nothing, "")
    code, out, err = run("limits", "clear", "send_smss")
    assert (code, out) == (0, "send_smss" + nothing)
    assert err.startswith("errands: warning: no job type 'send_smss' in namespace ")
    assert err.endswith(
        "(did you mean 'send_sms'? nothing to clear; limits set at run time: send_email)\n"
    )


async def test_limits_of_a_name_no_running_pool_serves_warn(
    run: Run, redis_url: str, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A name jobs were enqueued under (so not a "no job type" typo) that no running pool
    serves: one warning line on stderr, as ``errands enqueue``'s, the limits stored, status 0;
    none once a pool serves it. (``main`` in a thread: the pool runs on this loop.)"""
    async with Enqueuer.from_url(redis_url, namespace=namespace, strict=None) as enqueuer:
        await enqueuer.enqueue("sms")
    argv = ("limits", "set", "sms", "concurrency=1")
    code, out, err = await asyncio.to_thread(run, *argv)
    assert (code, out) == (0, "sms: concurrency=1 (pools apply it within a second)\n")
    assert err == (
        f"errands: warning: no running pool serves job name 'sms' in namespace {namespace!r} "
        "(no pool is running); its limits apply once a pool serves it\n"
    )
    assert not [r for r in caplog.records if r.name == "errands.admin"]  # (not twice)
    pool = WorkerPool.from_url(redis_url, namespace=namespace)

    @pool.job("sms")
    async def sms(job: Job) -> None: ...

    async with pool:
        assert (await asyncio.to_thread(run, *argv))[::2] == (0, "")
