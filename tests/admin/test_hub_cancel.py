"""A cancel that comes as the awaited thing completes goes through. Python 3.11's
asyncio.wait_for loses it (it returns the result instead): a task iterating ``events()``,
cancelled as an event arrived, went on for good (seen as a hang of a test's event collector
under load). errands waits with ``asyncio.timeout`` instead."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from errands.admin.hub import Subscriber
from errands.aio import wait_event

SRC = Path(__file__).resolve().parents[2] / "src" / "errands"


async def test_a_stream_cancelled_as_an_event_arrives_is_cancelled() -> None:
    sub = Subscriber(None)
    task = asyncio.create_task(sub.get(10.0))
    await asyncio.sleep(0)  # (waiting on the queue)
    sub.queue.put_nowait({"event": "started"})  # the event and the cancel in one loop turn
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sub.queue.qsize() == 1  # (the event stays for whoever reads next)


async def test_a_wait_cancelled_as_its_event_is_set_is_cancelled() -> None:
    event = asyncio.Event()
    task = asyncio.create_task(wait_event(event, 10.0))
    await asyncio.sleep(0)
    event.set()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_wait_times_out_quietly() -> None:
    await wait_event(asyncio.Event(), 0.001)
    assert await Subscriber(None).get(0.001) is None


def test_no_asyncio_wait_for_in_the_package() -> None:
    """Every timed wait of errands' own uses asyncio.timeout (see the module's docstring)."""
    found = [
        f"{path.relative_to(SRC)}:{n}"
        for path in sorted(SRC.rglob("*.py"))
        for n, line in enumerate(path.read_text("utf-8").splitlines(), 1)
        if re.search(r"\basyncio\.wait_for\(", line)
    ]
    assert found == []
