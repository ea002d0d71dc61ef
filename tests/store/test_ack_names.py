"""An ack whose entry names a job otherwise than its fetch did (another name, or a name index of
another name) leaves that job alone as unfit: the running counts of every name go back to zero
once it is acknowledged as it was fetched."""

from __future__ import annotations

from redis.asyncio import Redis

from errands import Enqueuer
from errands.store.keys import Keys
from errands.store.scripts import Acked, Scripts
from tests.store.test_scripts_args import request

NAMES = ("work", "other")


async def fetched(redis: Redis, scripts: Scripts, namespace: str) -> dict[str, Acked]:
    """A job of ``work`` and one of ``other`` fetched by pool p1, as its ack names them."""
    enqueuer = Enqueuer(redis, namespace=namespace)
    for name in NAMES:
        assert await enqueuer.enqueue(name) is not None
    await scripts.heartbeat("p1", b"{}", 60_000, mode="register")
    got = await scripts.fetch("p1", 0, 10, [("work", 0), ("other", 0)])
    assert got is not None and [f.queue_index for f in got] == [1, 2]
    return {
        n: Acked(f.id, n, b"1", 1_000, 60_000, 1, f.token) for f, n in zip(got, NAMES, strict=True)
    }


async def counts(redis: Redis, keys: Keys) -> dict[bytes, bytes]:
    return await redis.hgetall(keys.running)  # type: ignore[no-any-return]


async def test_an_entry_naming_another_job_name_is_left_alone_as_unfit(
    redis: Redis, namespace: str
) -> None:
    """The ack of a job of ``work`` sent as one of ``other``: its in-progress entry
    ``<id>:work`` was not found, yet the job was acknowledged: ``running`` of ``work`` stayed
    at 1 for ever (and the entry stayed in the pool's set)."""
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    acked = await fetched(redis, scripts, namespace)
    work = acked["work"]
    wrong = Acked(work.id, "other", b"1", 1_000, 60_000, 1, work.token)
    report = await scripts.ack_report("p1", [wrong], False, 5_000, True)
    assert (report.unfit, report.refused) == ([work.id], [])
    assert await redis.hexists(keys.jobs, work.id)
    assert await counts(redis, keys) == {b"work": b"1", b"other": b"1"}
    report = await scripts.ack_report("p1", list(acked.values()), False, 5_000, True)
    assert (report.unfit, report.refused) == ([], [])
    assert await counts(redis, keys) == {b"work": b"0", b"other": b"0"}
    assert await redis.zcard(keys.in_progress("p1")) == 0


async def test_an_entry_whose_name_index_is_another_names_is_left_alone_as_unfit(
    redis: Redis, namespace: str
) -> None:
    """Both jobs given name index 1: ``running`` was counted down by 2 under the name of the
    last of them (work 1, other -1), and its history written into the other name's."""
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    acked = await fetched(redis, scripts, namespace)
    both = [acked["work"], acked["other"]]
    call, args = await request(scripts, scripts.ack("p1", both, False, 5_000, True))
    at = 8 + 2 * 2 + 6 + 2  # ARGV[at]: the name index of the second job (ack.lua's header)
    assert args[at - 1] == 2
    args[at - 1] = 1
    reply = await scripts._s["ack"](keys=call, args=args)
    assert reply == [1, 1, acked["other"].id.encode()]
    assert await counts(redis, keys) == {b"work": b"0", b"other": b"1"}
    assert await redis.zcard(keys.history_of("work")) == 1
    report = await scripts.ack_report("p1", [acked["other"]], False, 5_000, True)
    assert (report.unfit, report.refused) == ([], [])
    assert await counts(redis, keys) == {b"work": b"0", b"other": b"0"}
