"""The worker command's extra options, as real subprocesses: --check, --burst progress lines,
--log-format json, --metrics-port and --reload."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from errands import Enqueuer
from errands.store.devserver import free_port
from tests.support.procs import Procs, eventually, live_pools, subprocess_env


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    with Procs(tmp_path) as p:
        yield p


async def enqueue_work(redis_url: str, namespace: str, n: int, seconds: float) -> None:
    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        await enqueuer.enqueue_many([("work", {"seconds": seconds})] * n)


async def test_check_exits_0_only_while_a_pool_heartbeats(
    procs: Procs, redis_url: str, namespace: str, redis: Redis
) -> None:
    check = procs.worker("single:pool", redis_url, namespace, "--check")
    assert await check.wait(20) == 1
    assert f"no live pool in namespace {namespace!r}" in check.output()

    worker = procs.worker("single:pool", redis_url, namespace)
    await eventually(lambda: live_pools(redis, namespace), 15, "the pool to register")
    check = procs.worker("single:pool", redis_url, namespace, "--check")
    assert await check.wait(20) == 0, check.output()
    assert "ok: 1 live pool(s)" in check.output()

    worker.send(signal.SIGTERM)
    assert await worker.wait(20) == 0
    unreachable = procs.worker("single:pool", "redis://127.0.0.1:1/0", namespace, "--check")
    assert await unreachable.wait(30) == 1
    assert "cannot reach redis://127.0.0.1:1/0" in unreachable.output()


async def test_burst_prints_progress_and_json_logs(
    procs: Procs, redis_url: str, namespace: str
) -> None:
    await enqueue_work(redis_url, namespace, 12, 0.05)
    proc = procs.worker(
        "single:pool",
        redis_url,
        namespace,
        "--burst",
        "--progress-interval",
        "0.15",
        "--log-format",
        "json",
    )
    assert await proc.wait(30) == 0, proc.output()
    lines = [json.loads(line) for line in proc.output().splitlines() if line.startswith("{")]
    assert lines, proc.output()
    messages = [line["message"] for line in lines]
    progress = [m for m in messages if m.startswith("burst: ") and "queued" in m]
    assert progress, messages
    assert any("(work " in m for m in progress), progress  # remaining count per job name
    assert any(m.startswith("burst: done, 12 jobs in") for m in messages), messages
    done = [
        line for line in lines if line["message"].endswith("ms") and "done in" in line["message"]
    ]
    assert len(done) == 12
    assert {line["job_name"] for line in done} == {"work"}
    assert all(len(line["job_id"]) == 32 and line["attempt"] == 1 for line in done)
    assert all(line["level"] == "INFO" and line["logger"] == "errands.worker" for line in done)


async def test_burst_and_stop_lines_count_failed_attempts(
    procs: Procs, redis_url: str, namespace: str
) -> None:
    """Jobs that failed are not '0 jobs': the summary lines count the failed attempts too."""
    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        bad = [("work", {"seconds": "soon"})] * 2  # JobArgumentError: dead at once
        await enqueuer.enqueue_many([*bad, ("work", {"seconds": 0.01})])
    proc = procs.worker("single:pool", redis_url, namespace, "--burst")
    assert await proc.wait(30) == 0, proc.output()
    output = proc.output()
    assert "burst: done, 1 job and 2 failed attempts in " in output, output
    assert " stopped after 1 job and 2 failed attempts\n" in output, output


async def test_metrics_port_serves_prometheus_metrics(
    procs: Procs, redis_url: str, namespace: str, redis: Redis
) -> None:
    pytest.importorskip("prometheus_client")
    port = free_port()
    proc = procs.worker(
        "single:pool",
        redis_url,
        namespace,
        "--metrics-port",
        str(port),
        "--metrics-host",
        "127.0.0.1",
    )
    await eventually(lambda: live_pools(redis, namespace), 15, "the pool to register")
    await enqueue_work(redis_url, namespace, 2, 0.01)

    async def scrape() -> str | None:
        try:
            async with httpx.AsyncClient() as http:
                text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
        except httpx.HTTPError:
            return None
        return text if 'errands_jobs_succeeded_total{job_name="work"} 2.0' in text else None

    text = await eventually(scrape, 20, "metrics with two succeeded jobs", interval=0.1)
    assert 'errands_queue_jobs{job_name="work",state="queued"} 0.0' in text
    assert "errands_pools 1.0" in text
    assert 'errands_job_run_seconds_count{job_name="work"} 2.0' in text
    proc.send(signal.SIGTERM)
    assert await proc.wait(20) == 0, proc.output()


def test_processes_serve_metrics_on_consecutive_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    """--processes 4 --metrics-port N: the supervisor starts 4 workers, on ports N to N+3 (each
    serves its port as test_metrics_port_serves_prometheus_metrics's one does)."""
    from errands.cli import commands

    started: list[list[str]] = []

    class Child:
        def __init__(self, argv: list[str], **_kw: object) -> None:
            started.append(argv)

        def wait(self) -> int:
            return 0

    monkeypatch.setattr(commands.subprocess, "Popen", Child)
    monkeypatch.setattr(commands.signal, "signal", lambda *_a: None)  # (pytest's own kept)
    argv = ["worker", "single:pool", "--processes", "4", "--metrics-port", "9100"]
    args = commands.build_parser().parse_args(argv)
    assert args.func(args) == 0
    ports = [int(cmd[cmd.index("--metrics-port") + 1]) for cmd in started]
    assert ports == [9100, 9101, 9102, 9103]
    assert all(cmd[cmd.index("--processes") + 1] == "1" for cmd in started)


def test_metrics_are_served_on_every_address_by_default() -> None:
    """docs/observability.md: ``--metrics-host``, default ``0.0.0.0``."""
    from errands.cli import commands

    argv = ["worker", "single:pool", "--metrics-port", "9100"]
    assert commands.build_parser().parse_args(argv).metrics_host == "0.0.0.0"


JOBS_PY = """
import os

from errands import WorkerPool

VERSION = {version}
pool = WorkerPool(url="redis://127.0.0.1:9/0")


@pool.job("version")
async def version() -> int:
    return VERSION


with open("started.txt", "a") as f:
    f.write(f"{{os.getpid()}} {{VERSION}}\\n")
"""


def _started(tmp: Path) -> list[tuple[int, int]]:
    path = tmp / "started.txt"
    if not path.exists():
        return []
    return [(int(p), int(v)) for p, v in (line.split() for line in path.read_text().splitlines())]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by its parent) counts as gone
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    return True


async def test_reload_restarts_the_worker_when_a_file_changes(
    tmp_path: Path, redis_url: str, namespace: str, redis: Redis
) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "jobs.py").write_text(JOBS_PY.format(version=1))
    args = ["-m", "errands", "worker", "jobs:pool", "--redis", redis_url, "--namespace", namespace]
    log = (tmp_path / "reload.log").open("wb")
    parent = subprocess.Popen(  # noqa: ASYNC220 - a process group of its own, killed below
        [sys.executable, *args, "--reload", "--reload-interval", "0.1"],
        cwd=app,
        env=subprocess_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:

        async def started(n: int) -> list[tuple[int, int]]:
            return found if len(found := _started(app)) >= n else []

        [(first, v1)] = await eventually(lambda: started(1), 20, "the first worker")
        await eventually(lambda: live_pools(redis, namespace), 15, "the pool to register")
        assert v1 == 1
        (app / "jobs.py").write_text(JOBS_PY.format(version=2))
        later = time.time() + 2  # a clearly different mtime, however coarse the filesystem's
        os.utime(app / "jobs.py", (later, later))
        [_, (second, v2)] = await eventually(lambda: started(2), 30, "the restarted worker")
        assert v2 == 2 and second != first
        await eventually(lambda: _async(not _alive(first)), 15, "the first worker to exit")
        parent.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        while parent.poll() is None and time.monotonic() < deadline:
            await _sleep(0.05)
        assert parent.returncode == 0, (tmp_path / "reload.log").read_text()
        assert not _alive(second)
        assert "jobs.py changed; restarting the worker" in (tmp_path / "reload.log").read_text()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(parent.pid, signal.SIGKILL)
        for pid, _v in _started(app):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        parent.wait(5)
        log.close()


async def _async(value: bool) -> bool:
    return value


async def _sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)
