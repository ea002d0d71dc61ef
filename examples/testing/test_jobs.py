"""Testing jobs with the errands pytest plugin: `pytest` in this directory."""

from __future__ import annotations

import jobs

from errands.testing import ErrandsHarness


async def test_welcome_email_is_sent(errands_harness: ErrandsHarness) -> None:
    jobs.outbox.clear()
    await jobs.send_welcome.enqueue("ada@example.com")  # lands in this test's namespace
    await errands_harness.run_until_idle()
    assert jobs.outbox == ["ada@example.com: Welcome!"]


async def test_result_of_a_job(errands_harness: ErrandsHarness) -> None:
    job = await jobs.add.enqueue(a=2, b=3)
    assert job is not None
    await errands_harness.run_until_idle()
    assert await job.result(timeout=1) == 5


async def test_bad_arguments_go_to_the_dead_set(errands_harness: ErrandsHarness) -> None:
    await errands_harness.enqueue("add", {"a": "two", "b": 3})
    await errands_harness.run_until_idle()
    assert await errands_harness.client.dead_count() == 1


async def test_retries_with_the_fake_clock(errands_harness: ErrandsHarness) -> None:
    await jobs.send_welcome.enqueue("bob@down.example")
    await errands_harness.run_until_idle()  # first attempt fails; the retry is due in 60 s
    assert await errands_harness.client.dead_count() == 0
    for _ in range(2):
        errands_harness.clock.advance(60)
        await errands_harness.run_until_idle()
    assert await errands_harness.client.dead_count() == 1  # max_fails=3
