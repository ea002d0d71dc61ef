"""The command line, as real subprocesses: ``python -m errands worker MODULE:ATTR ...`` and a
project's own worker module ending in ``pool.run()``."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from errands import Enqueuer
from errands.cli.commands import build_parser
from errands.store.devserver import RedisServer, free_port
from errands.store.keys import Keys
from tests.support.commandstats import command_calls
from tests.support.procs import Procs, eventually, live_pools, max_overlap, records


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    with Procs(tmp_path) as p:
        yield p


async def enqueue_work(redis_url: str, namespace: str, n: int, seconds: float) -> set[str]:
    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        jobs = await enqueuer.enqueue_many([("work", {"seconds": seconds})] * n)
    return {job.id for job in jobs}


@pytest.mark.parametrize("target", ["single:pool", "single:make_pool"])
async def test_burst_processes_queued_jobs_and_exits_0(
    procs: Procs, redis_url: str, namespace: str, redis: Redis, target: str
) -> None:
    ids = await enqueue_work(redis_url, namespace, 5, 0.01)
    proc = procs.worker(target, redis_url, namespace, "--burst")
    assert await proc.wait(20) == 0, proc.output()
    done = await records(redis, namespace, "intervals")
    assert sorted(r["id"] for r in done) == sorted(ids)
    keys = Keys(namespace)
    assert await redis.zcard(keys.queue("work")) == 0
    assert await redis.hget(keys.stats, "processed") == b"5"
    assert await live_pools(redis, namespace) == []


async def test_burst_with_empty_queues_exits_at_once(
    procs: Procs, redis_url: str, namespace: str
) -> None:
    proc = procs.worker("single:pool", redis_url, namespace, "--burst")
    assert await proc.wait(10) == 0, proc.output()


async def test_processes_2_burst_runs_two_worker_processes(
    procs: Procs, redis_url: str, namespace: str, redis: Redis
) -> None:
    ids = await enqueue_work(redis_url, namespace, 16, 0.15)
    proc = procs.worker("single:pool", redis_url, namespace, "--processes", "2", "--burst")
    assert await proc.wait(30) == 0, proc.output()
    done = await records(redis, namespace, "intervals")
    assert sorted(r["id"] for r in done) == sorted(ids)
    pids = {r["pid"] for r in done}
    assert len(pids) == 2, f"jobs ran in {pids}"
    assert proc.pid not in pids  # the supervisor runs no jobs itself
    # each child has concurrency 1, so two processes overlap by at most 2
    assert max_overlap([(r["start"], r["end"]) for r in done]) == 2


async def test_concurrency_flag_overrides_the_pool(
    procs: Procs, redis_url: str, namespace: str, redis: Redis
) -> None:
    await enqueue_work(redis_url, namespace, 8, 0.3)
    proc = procs.worker("single:pool", redis_url, namespace, "--concurrency", "4", "--burst")
    assert await proc.wait(20) == 0, proc.output()
    done = await records(redis, namespace, "intervals")
    assert len(done) == 8
    # the app says concurrency=1; the flag says 4
    assert max_overlap([(r["start"], r["end"]) for r in done]) == 4


@pytest.mark.parametrize("flag", ["--concurrency", "--processes"])
@pytest.mark.parametrize("value", ["-1", "0", "2.5", "many"])
def test_count_flags_refuse_what_is_not_a_whole_number_of_at_least_one(
    flag: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit:
        build_parser().parse_args(["worker", "single:pool", flag, value])
    assert exit.value.code == 2
    assert f"{flag}: must be a whole number >= 1, not '{value}'" in capsys.readouterr().err
    assert getattr(build_parser().parse_args(["worker", "p:p", flag, "3"]), flag[2:]) == 3


async def test_no_redis_functions_flag(procs: Procs, namespace: str) -> None:
    """``--no-redis-functions`` (passed on to each of ``--processes``): no FUNCTION LOAD, no
    FCALL on the server (a private one: no other test's calls), the jobs run by EVALSHA."""
    with RedisServer() as server:
        ids = await enqueue_work(server.url, namespace, 6, 0.01)
        flags = ("--processes", "2", "--no-redis-functions", "--burst")
        proc = procs.worker("single:pool", server.url, namespace, *flags)
        assert await proc.wait(30) == 0, proc.output()
        async with Redis.from_url(server.url) as redis:
            done = await records(redis, namespace, "intervals")
            calls = await command_calls(redis)
    assert sorted(r["id"] for r in done) == sorted(ids)
    assert (calls.get("function|load", 0), calls.get("fcall", 0)) == (0, 0)
    assert calls.get("evalsha", 0) >= 2


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (
            "tests.support.apps.no_such_module:pool",
            "cannot import 'tests.support.apps.no_such_module'",
        ),
        ("tests.support.apps.single:no_such_pool", "has no attribute 'no_such_pool'"),
        ("tests.support.apps.single", "expected MODULE:ATTRIBUTE"),
        ("tests.support.apps.single:not_a_pool", "is a int, not a WorkerPool"),
    ],
)
@pytest.mark.parametrize("processes", ["1", "2"])
async def test_bad_import_path_exits_2_with_a_message(
    procs: Procs, redis_url: str, namespace: str, target: str, message: str, processes: str
) -> None:
    args = ["-m", "errands", "worker", target, "--redis", redis_url, "--namespace", namespace]
    proc = procs.start([*args, "--processes", processes, "--burst"])
    assert await proc.wait(15) == 2
    output = proc.output()
    assert message in output, output
    assert output.startswith("errands: "), output
    assert "Traceback" not in output, output


async def test_unreachable_redis_exits_2_naming_the_url(procs: Procs, namespace: str) -> None:
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    proc = procs.worker("single:pool", url, namespace, "--burst")
    assert await proc.wait(30) == 2
    output = proc.output()
    assert "cannot reach Redis at redis://:***@127.0.0.1:" in output, output
    assert "hunter2" not in output
    assert "Traceback" not in output, output


async def test_own_worker_module_with_pool_run(
    procs: Procs, redis_url: str, namespace: str, redis: Redis
) -> None:
    ids = await enqueue_work(redis_url, namespace, 4, 0.05)
    env = {"ERRANDS_REDIS_URL": redis_url, "ERRANDS_NAMESPACE": namespace}
    proc = procs.start(["-m", "tests.support.apps.own_worker"], env=env)

    async def finished() -> bool:
        done = await records(redis, namespace, "intervals")
        return sorted(r["id"] for r in done) == sorted(ids)

    await eventually(finished, 15, "the own worker to run 4 jobs")
    assert proc.poll() is None, proc.output()
    proc.send(signal.SIGTERM)
    assert await proc.wait(10) == 0, proc.output()
    assert "Traceback" not in proc.output()
    assert await live_pools(redis, namespace) == []


async def test_sigterm_to_supervisor_stops_every_child(
    procs: Procs, redis_url: str, namespace: str, redis: Redis
) -> None:
    proc = procs.worker("single:pool", redis_url, namespace, "--processes", "2")

    async def both_up() -> bool:
        return len(await live_pools(redis, namespace)) == 2

    await eventually(both_up, 15, "two worker processes to register")
    proc.send(signal.SIGTERM)
    assert await proc.wait(15) == 0, proc.output()
    assert await live_pools(redis, namespace) == []
    assert proc.output().count("SIGTERM received") == 2, proc.output()


async def test_a_child_killed_by_a_signal_fails_the_supervisor(
    procs: Procs, redis_url: str, namespace: str, redis: Redis
) -> None:
    """``--processes 2``: one child killed with SIGKILL, the other stopped by SIGTERM (exit 0):
    the parent exits 137 (128 + 9, as a shell reports a kill), not 0 (it took the highest of
    Popen's codes, and a kill is a negative one)."""
    proc = procs.worker("single:pool", redis_url, namespace, "--processes", "2")

    async def both_up() -> bool:
        return len(await live_pools(redis, namespace)) == 2

    await eventually(both_up, 15, "two worker processes to register")
    children = _children(proc.pid)
    assert len(children) == 2, children
    os.kill(children[0], signal.SIGKILL)
    proc.send(signal.SIGTERM)
    assert await proc.wait(15) == 128 + signal.SIGKILL, proc.output()


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # (gone meanwhile)
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:  # (the field after the state)
                found.append(int(entry.name))
    return found
