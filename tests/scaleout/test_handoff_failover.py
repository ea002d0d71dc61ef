"""A failover under an idle pool that takes hand-offs: Sentinel promotes the replica, then the
old master is demoted (REPLICAOF, as Sentinel converts it) and keeps its clients connected,
answering from its data as it was until its resync is done. The jobs enqueued on the new master
meanwhile are handed to the pool and start at once, each runs once and each ack goes through:
none is left in the pool's in-progress set for the orphan sweep to run again."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from errands import Enqueuer, Job, WorkerPool
from errands.store.keys import Keys
from tests.support.infra import SentinelInfra
from tests.support.infra.nodes import Node, wait_for

from .conftest import unique_namespace

RESYNC_DELAY = 3  # seconds the new master waits before it syncs the demoted one


async def test_hand_offs_and_acks_go_on_while_the_old_master_is_demoted(tmp_path: Path) -> None:
    namespace = unique_namespace()
    keys = Keys(namespace)
    runs: Counter[str] = Counter()
    with SentinelInfra(replicas=1, down_after_ms=1000, root=tmp_path) as sentinel:
        old = sentinel.current_master()
        pool = WorkerPool.from_url(
            sentinel.url, namespace=namespace, concurrency=2, poll_interval=0.5
        )

        @pool.job("w")
        async def w(job: Job) -> None:
            runs[job.id] += 1

        async with pool:
            worker = pool.worker
            assert worker is not None
            async with Enqueuer.from_url(sentinel.url, namespace=namespace) as enq:
                # a job handed and acked: the held connections are on the master
                await asyncio.to_thread(wait_for, "idle", lambda: _idle(old, keys), 10.0)
                await enq.enqueue("w")
                await _until(lambda: worker.mailbox.received == 1 and not worker.tasks, 5.0)
                await asyncio.to_thread(wait_for, "idle", lambda: _idle(old, keys), 10.0)
            new = await asyncio.to_thread(_fail_over, sentinel, old)
            async with Enqueuer.from_url(sentinel.url, namespace=namespace) as enq:
                for _ in range(10):  # while the demoted master answers from its old data
                    sent = time.monotonic()
                    job = await enq.enqueue("w")
                    assert job is not None
                    job_id = job.id
                    await _until(lambda: runs[job_id] > 0, 5.0)  # noqa: B023 (awaited here)
                    assert time.monotonic() - sent < 1.0  # handed or fetched, not held up
                    await asyncio.sleep(0.2)
                assert worker.acker.refused == 0  # (each ack refused left its job behind)
                await _until(lambda: new.call("ZCARD", keys.in_progress(pool.id)) == 0, 5.0)
                assert worker.mailbox.received > 1  # (handed to it after the failover too)
                assert worker.reclaimed == 0
    assert len(runs) == 11 and set(runs.values()) == {1}


def _idle(node: Node, keys: Keys) -> bool:
    """The pool marked idle, blocked on its hand-off list."""
    with contextlib.closing(node.client()) as client:
        blocked = any(c.get("cmd") == "blpop" for c in client.client_list())
    return blocked and bool(node.call("ZCARD", keys.idle_for("w")))


def _fail_over(sentinel: SentinelInfra, old: Node) -> Node:
    """SENTINEL FAILOVER; once every sentinel names the new master, the old one is demoted (as
    Sentinel converts it later) with its clients connected; its resync waits RESYNC_DELAY."""
    sentinel.sentinels[0].call("SENTINEL", "FAILOVER", sentinel.service)

    def promoted() -> int:
        ports = {
            int(s.call("SENTINEL", "GET-MASTER-ADDR-BY-NAME", sentinel.service)[1])
            for s in sentinel.sentinels
        }
        return ports.pop() if len(ports) == 1 and old.port not in ports else 0

    port = wait_for("a replica promoted", promoted, 20.0)
    new = next(n for n in sentinel.data_nodes if n.port == port)
    new.call("CONFIG", "SET", "repl-diskless-sync-delay", str(RESYNC_DELAY))
    old.call("REPLICAOF", "127.0.0.1", str(port))
    return new


async def _until(check: Callable[[], bool], timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)
