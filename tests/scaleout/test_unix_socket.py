"""A server reached by a Unix socket (``unix://``, docs/deployment.md): the connection options
errands sets by default include TCP's keepalive, which redis-py's Unix-socket connection
refuses: every enqueue raised ``TypeError: ... unexpected keyword argument 'socket_keepalive'``
(found by review)."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from errands import Enqueuer, SyncEnqueuer
from errands.store.devserver import RedisServer


@pytest.fixture
def unix_url() -> Iterator[str]:
    folder = Path(tempfile.mkdtemp(prefix="errands-", dir="/tmp"))  # (a socket path is short)
    sock = folder / "redis.sock"
    try:
        with RedisServer(unixsocket=str(sock), unixsocketperm="700"):
            yield f"unix://{sock}?db=0"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_enqueues_over_a_unix_socket(unix_url: str, namespace: str) -> None:
    async def enqueue() -> list[bool]:
        async with Enqueuer.from_url(unix_url, namespace=namespace, strict=None) as enqueuer:
            job = await enqueuer.enqueue("a", {"i": 1}, job_id="one")
            jobs = await enqueuer.enqueue_many([("a", {"i": 2}, {"job_id": "two"})])
            again = await enqueuer.enqueue("a", {"i": 1}, job_id="one")
            assert job is not None and again is not None
            return [job.existed, *(j.existed for j in jobs), again.existed]

    assert asyncio.run(enqueue()) == [False, False, True]
    with SyncEnqueuer(unix_url, namespace=namespace, strict=None) as sync:
        job = sync.enqueue("a", {"i": 3}, job_id="three")
        assert job is not None and not job.existed
