"""A component's log lines while Redis fails it (errands/outagelog.py): one WARNING when the
failures start, at most one reminder per ``remind_every`` while they last, one INFO when a call
gets through again; on an injected clock, no sleeps."""

from __future__ import annotations

import asyncio
import logging

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from errands.clock import SystemClock
from errands.outagelog import OutageLog
from errands.worker.reaper import Reaper

LOGGER = "errands.test.outage"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == LOGGER]


def test_an_outage_logs_once_then_reminds_at_most_every_30s_then_says_it_is_over(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    clock = Clock()
    outage = OutageLog(logging.getLogger(LOGGER), "fetch loop", clock=clock)
    exc = RedisConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused.")
    outage.ok()  # nothing failed: nothing to say
    for _ in range(450):  # 45 s of failures, ten a second
        outage.failed(exc)
        clock.t += 0.1
    got = lines(caplog)
    assert [level for level, _ in got] == [logging.WARNING, logging.WARNING]
    first, reminder = (message for _, message in got)
    assert first.startswith("fetch loop: Redis calls failing (ConnectionError: Error 111")
    assert "retrying with backoff" in first
    assert reminder.startswith("fetch loop: Redis calls still failing for 30s (301 failed, last:")
    outage.ok()
    outage.ok()
    got = lines(caplog)
    assert len(got) == 3
    assert got[2] == (
        logging.INFO,
        "fetch loop: Redis reachable again after 45.0s (450 failed calls)",
    )


def test_a_new_outage_starts_afresh(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    clock = Clock()
    outage = OutageLog(logging.getLogger(LOGGER), "acker", clock=clock, remind_every=10.0)
    outage.failed(TimeoutError("timed out"))
    clock.t += 2.5
    outage.ok()
    clock.t += 100.0
    outage.failed(TimeoutError("timed out"))  # a new outage: a first line at once
    clock.t += 9.9
    outage.failed(TimeoutError("timed out"))  # within remind_every of its start: quiet
    clock.t += 0.1
    outage.failed(TimeoutError("timed out"))
    messages = [message for _, message in lines(caplog)]
    assert messages == [
        "acker: Redis calls failing (TimeoutError: timed out); retrying with backoff (a "
        "reminder every 10s while it lasts, a line when it works again)",
        "acker: Redis reachable again after 2.5s (1 failed calls)",
        "acker: Redis calls failing (TimeoutError: timed out); retrying with backoff (a "
        "reminder every 10s while it lasts, a line when it works again)",
        "acker: Redis calls still failing for 10s (3 failed, last: TimeoutError: timed out); "
        "retrying",
    ]


def test_an_outage_after_a_refusal_opens_with_its_first_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """refused() starts the outage's clock; a connection failure 25 s later still logs its first
    line (it read "still failing for 25s", no line saying that Redis calls fail), and its
    reminder comes remind_every after that line."""
    caplog.set_level(logging.INFO, LOGGER)
    clock = Clock()
    outage = OutageLog(logging.getLogger(LOGGER), "fetch loop", clock=clock)
    outage.refused(ResponseError("WRONGTYPE k holds another type: nothing fetched"))
    clock.t += 25.0
    outage.failed(TimeoutError("timed out"))
    clock.t += 29.0
    outage.failed(TimeoutError("timed out"))  # within remind_every of its first line: quiet
    clock.t += 1.0
    outage.failed(TimeoutError("timed out"))
    messages = [message for _, message in lines(caplog)]
    assert messages == [
        "fetch loop: calls refused: WRONGTYPE k holds another type: nothing fetched; retrying "
        "with backoff (a line when it works again)",
        "fetch loop: Redis calls failing (TimeoutError: timed out); retrying with backoff (a "
        "reminder every 30s while it lasts, a line when it works again)",
        "fetch loop: Redis calls still failing for 55s (4 failed, last: TimeoutError: timed "
        "out); retrying",
    ]


class _Lease:
    """A lease whose beats failed since the outage: not healthy (the reaper then asks nothing)."""

    interval = 1.0

    def __init__(self) -> None:
        self.healthy = 100.0

    def healthy_for(self) -> float:
        return self.healthy


class _Scripts:
    """dead_pools() fails while Redis is down; the lease goes unhealthy with that failure."""

    def __init__(self, lease: _Lease) -> None:
        self.lease = lease
        self.calls = 0

    async def dead_pools(self, dead_timeout_ms: int) -> list[str]:
        self.calls += 1
        self.lease.healthy = 0.0  # (its heartbeats fail too)
        raise RedisConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused.")


async def test_the_reaper_says_redis_is_back_only_after_a_call_of_its_own_got_through(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Its lease unhealthy, a pass asks Redis nothing: that pass said "reachable again" while
    Redis was still down."""
    caplog.set_level(logging.INFO, "errands.reaper")
    lease = _Lease()
    scripts = _Scripts(lease)
    reaper = Reaper(scripts, SystemClock(), "me", lease, 10.0, 0.0, 3)  # type: ignore[arg-type]
    task = asyncio.create_task(reaper.run())
    for _ in range(20):  # passes: the first fails, the next ones are not trusted
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert scripts.calls == 1
    messages = [r.getMessage() for r in caplog.records if r.name == "errands.reaper"]
    assert len(messages) == 1 and "Redis calls failing" in messages[0], messages
