"""The Redis password never shows: not in log records (through an outage, with every logger at
DEBUG), not in errors raised to the caller, not in the CLI's messages, not on the dashboard."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from errands import Client, Enqueuer, Job, JobStatus, RedisUnavailableError, WorkerPool
from tests.support.infra import Node, free_port
from tests.support.procs import ROOT, eventually, subprocess_env

from .conftest import unique_namespace

PASSWORD = "pw-Zq81-never-shown"


async def test_no_password_in_logs_or_errors_through_an_outage(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    node = Node(tmp_path, "secret", ["--requirepass", PASSWORD], password=PASSWORD).start()
    url = f"redis://default:{PASSWORD}@127.0.0.1:{node.port}/0"
    namespace = unique_namespace()
    pool = WorkerPool.from_url(
        url, namespace=namespace, heartbeat_interval=0.1, dead_timeout=0.5, poll_interval=0.1
    )
    done: list[str] = []

    @pool.job("j")
    async def j(job: Job) -> None:
        done.append(job.id)

    try:
        async with Enqueuer.from_url(url, namespace=namespace) as enqueuer, pool:
            first = await enqueuer.enqueue("j")
            assert first is not None
            first_id = first.id
            await eventually(lambda: _ready(len(done) == 1), 10, "a first job done")
            # and acknowledged: an ack still unsent when Redis goes has the pool that lost its
            # lease wait up to 30 s for it before registering again (logged, awaited below)
            async with Client.from_url(url, namespace=namespace) as client:
                await eventually(lambda: _finished(client, first_id), 10, "the first job acked")
            node.kill()
            with pytest.raises(RedisUnavailableError) as raised:
                await enqueuer.enqueue("j")
            assert "redis://default:***@127.0.0.1" in str(raised.value)

            async def warned() -> bool:
                # the heartbeat thread's failures, and the pool, which gives its lease up and
                # retries registering under a new id, naming the Redis URL (masked)
                warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
                names = {r.name for r in warnings}
                return "errands.heartbeat" in names and any(
                    r.name == "errands.pool" and "redis://default:***@127.0.0.1" in r.getMessage()
                    for r in warnings
                )

            await eventually(warned, 30, "the outage logged")
            await asyncio.to_thread(node.start)
            await eventually(lambda: _try_enqueue(enqueuer), 10, "Redis back")
            await eventually(lambda: _ready(len(done) == 2), 10, "a job done after the outage")
    finally:
        node.kill()
    assert caplog.records
    assert PASSWORD not in caplog.text
    for record in caplog.records:
        assert PASSWORD not in record.getMessage()
        assert PASSWORD not in repr(record.args)


async def _ready(value: bool) -> bool:
    return value


async def _finished(client: Client, job_id: str) -> bool:
    info = await client.job(job_id)
    return info is not None and info.status == JobStatus.FINISHED


async def _try_enqueue(enqueuer: Enqueuer) -> bool:
    try:
        return await enqueuer.enqueue("j") is not None
    except RedisUnavailableError:
        return False


@pytest.mark.parametrize(
    "url",
    [
        "redis://app:{pw}@127.0.0.1:{port}/0",
        "rediss://app:{pw}@127.0.0.1:{port}/0",
        "redis+cluster://app:{pw}@127.0.0.1:{port},127.0.0.1:{port}",
        "redis+sentinel://app:{pw}@127.0.0.1:{port}/main?sentinel_password={pw}",
    ],
)
def test_cli_errors_hide_the_password(url: str) -> None:
    url = url.format(pw=PASSWORD, port=free_port())  # nothing listens there
    done = subprocess.run(
        [sys.executable, "-m", "errands", "inspect", "queues", "--redis", url],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "cannot reach Redis at" in done.stderr and ":***@" in done.stderr
    assert PASSWORD not in done.stdout + done.stderr


async def test_dashboard_hides_the_password() -> None:
    pytest.importorskip("starlette")
    from errands.web import dashboard
    from tests.support.dashboard import http

    url = f"redis://app:{PASSWORD}@127.0.0.1:{free_port()}/0"
    app = dashboard(url, namespace=unique_namespace())
    async with http(app) as browser:
        for path in ("/", "/queues", "/redis", "/api/overview"):
            response = await browser.get(path)
            assert PASSWORD not in response.text, path
    client: Client = app.state.client
    await client.aclose()
