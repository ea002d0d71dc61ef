"""Bad schedule values: refused where they are given, and one schedule that fails at a tick
does not stop the others of that tick."""

from __future__ import annotations

import dataclasses
import logging

import pytest
from redis.asyncio import Redis

from errands import FakeClock
from errands.periodic.store import make_periodic
from tests.periodic.support import pool, queued_args

START = 1_767_225_600.0


async def test_a_failing_schedule_does_not_stop_the_others(
    redis: Redis, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(START)
    good = make_periodic("@every 10s", "tick", {"who": "good"}, name="good")
    # a schedule that fails each time it is fired (a bool priority the script refuses)
    bad = dataclasses.replace(make_periodic("@every 10s", "tick", name="bad"), priority=True)
    e = pool(redis, namespace, clock, [bad, good], "p1")
    with caplog.at_level(logging.ERROR, "errands.periodic"):
        await e.tick_once()
        for _ in range(3):
            clock.advance(10)
            await e.tick_once()
    assert await queued_args(redis, namespace) == [{"who": "good"}] * 3
    assert "schedule 'bad' failed" in caplog.text
