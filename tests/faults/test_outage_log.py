"""A pool's log while Redis is unreachable for a few seconds (errands/outagelog.py): each
background component says once that its calls fail and that it retries, and once that Redis
answers again; not a line per retry from five loggers several times a second."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Callable

from redis.asyncio import Redis

from errands.store.devserver import RedisServer
from tests.support.procs import Procs, eventually

# "2026-12-06 15:45:47,323 WARNING errands.worker: fetch loop: Redis calls failing (..."
LINE = re.compile(r"^\S+ \S+ (WARNING|ERROR) (\S+): (.*)$", re.M)


async def test_an_outage_of_a_few_seconds_logs_a_bounded_number_of_lines_and_its_end(
    redis_server: Callable[..., RedisServer], procs: Procs, namespace: str
) -> None:
    # its data kept on disk (AOF): the pool keeps its lease across the restart
    server = redis_server(appendonly="yes", appendfsync="always")
    admin = Redis.from_url(server.url)
    try:
        worker = procs.worker("single:pool", server.url, namespace)
        await eventually(lambda: asyncio.sleep(0, " started: " in worker.output()), 15.0, "start")
        await asyncio.sleep(1.0)  # (its first fetch, subscription, heartbeat)
        before = len(worker.output())
        server.kill()
        await asyncio.sleep(4.0)  # a real outage: the pool's own clocks and backoffs run
        server.start()
        await eventually(
            lambda: asyncio.sleep(0, "fetch loop: Redis reachable again after" in worker.output()),
            15.0,
            "the fetch loop's recovery line",
        )
        await asyncio.sleep(0.5)
        output = worker.output()[before:]
    finally:
        await admin.aclose()
    complaints = LINE.findall(output)
    per_component = Counter(message.split(":")[0] for _level, _logger, message in complaints)
    # one line per failing component (the fetch loop, the hand-off list, the wake-up
    # subscription, the requeuer, the reaper, the heartbeat...), no reminder within 30 s
    assert all(n == 1 for n in per_component.values()), output
    assert len(complaints) <= 10, output
    assert "fetch loop: Redis calls failing" in output
    assert "retrying with backoff" in output
    assert "lost its lease" not in output
