"""A job name held from the fetches for a key of its own of another type (Acker.held_names) must
be fetched again once that key is repaired, also when its only parked ack is unfit for another
reason too (a key of its workflow run): the name was released only when a round acknowledged one
of its jobs, and the hold itself keeps any other job of it from being run, so the name stayed
held, its plain jobs waiting on its queue for as long as that one run's key stays bad (though the
round read its keys' types and found them of their types again)."""

from __future__ import annotations

from redis.asyncio import Redis

from errands import Enqueuer, Workflow
from errands.clock import SystemClock
from errands.store.keys import Keys
from errands.store.scripts import Acked, Scripts
from errands.worker.acker import Acker

POOL = "p0000000000000001"


async def test_a_held_name_is_fetched_again_once_its_key_is_repaired(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    wf = Workflow("chain", id="w1")
    a = wf.add("work", {}, id="a")
    wf.add("work", {}, id="b", after=[a])
    async with Enqueuer(redis, namespace=namespace, strict=None) as enq:
        run = await enq.enqueue_workflow(wf)
        await enq.enqueue_many([("work", {}, {"job_id": "plain"})])
    now = await scripts.heartbeat(POOL, b"{}", 600_000, "register")
    got = await scripts.fetch(POOL, now, 5, [("work", 0)])
    assert got is not None
    fetched = {f.id: f for f in got}
    member, plain = fetched[run.job_id("a")], fetched["plain"]
    await redis.delete(keys.workflow("w1", "res"))
    await redis.set(keys.workflow("w1", "res"), "x")  # (the member's run: unfit for that)
    await redis.set(keys.history_of("work"), "x")  # the name's own key of another type

    acker = Acker(scripts, POOL, SystemClock(), history=True)
    acker.add(Acked(member.id, "work", b"1", now, 60_000, 1, member.token), False)
    await acker.flush()
    assert set(acker.parked) == {member.id}
    assert acker.held_names() == {"work"}  # held: each job of it would be parked too

    await redis.delete(keys.history_of("work"))  # repaired
    await acker.resend_parked()  # a round: the member's run's key is still a string
    assert set(acker.parked) == {member.id}
    # the name's other jobs are acknowledged again (its keys of their types)...
    done = [Acked(plain.id, "work", b"1", now, 60_000, 1, plain.token)]
    report = await scripts.ack_report(POOL, done, False, now, True)
    assert (report.unfit, report.refused) == ([], [])
    # ...so they must be fetched again, not wait while that one run's key stays bad
    assert acker.held_names() == set(), (
        f"{acker.held_names()} held after its key was repaired (logged: {acker.bad_keys.logged})"
    )
