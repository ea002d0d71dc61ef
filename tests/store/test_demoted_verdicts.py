"""A master demoted to a replica keeps its clients connected and, until its resync is done,
answers from its data as it was: a held ack or settle connection still on it (a failover under
way) ran ack.lua or settle.lua there, whose fence found no attempt of this pool and refused the
job, writing nothing, so no READONLY came back. The worker took the refusal for the job taken
back: it dropped the job's ack, the job stayed in its in-progress set on the new master, and
the orphan sweep put it back on its queue: it ran twice (tests/scaleout/test_handoff_failover.py).
A verdict read and not written now writes nothing first, which a replica refuses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import ReadOnlyError

from errands.store.keys import Keys
from errands.store.records import Acked
from errands.store.scripts import Scripts, Settle
from tests.support.fetched import POOL, running_job
from tests.support.infra.nodes import free_port, own_node


@pytest.fixture
async def replica(tmp_path: Path) -> AsyncIterator[Redis]:
    """A replica of a master that is not there: its data as it was (none), read-only."""
    async with own_node(tmp_path, "replica", ["--replicaof", "127.0.0.1", str(free_port())]) as r:
        yield r


def _ack(job_id: str) -> Acked:
    return Acked(job_id, "work", b"null", 1, 0, 1, "1")


def _settles(keys: Keys, job_id: str) -> list[Settle]:
    queue = keys.queue("work")
    return [
        Settle(job_id, "work", "requeue", queue, 1, 1, token="1"),
        Settle(job_id, "work", "requeue", queue, 1, 1, token="*"),  # (the orphan sweep's)
    ]


async def test_a_replica_refuses_an_ack_rather_than_the_job(replica: Redis, namespace: str) -> None:
    scripts = Scripts(replica, Keys(namespace))
    with pytest.raises(ReadOnlyError):
        await scripts.ack_report(POOL, [_ack("j1")], False, 1, False)


async def test_a_replica_refuses_a_settle_rather_than_fence_it_off(
    replica: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    scripts = Scripts(replica, keys)
    for s in _settles(keys, "j1"):
        with pytest.raises(ReadOnlyError):
            await scripts.settle_report(POOL, [s])
        with pytest.raises(ReadOnlyError):
            await scripts.settle_report(POOL, [s, s])  # ({many})


async def test_a_resent_ack_a_demoted_master_answers_from_its_data_is_refused(
    tmp_path: Path, namespace: str
) -> None:
    """An ack applied on the old master, its reply lost, then re-sent to it once demoted: its
    data says the job ended (the re-send's own work), but the new master may lack the first
    send's write (replication is asynchronous) and still hold the job in this pool's set: the
    answer must not come from the stale data (it did: no refusal, nothing written)."""
    async with own_node(tmp_path, "demoted") as master:
        keys, job_id = await running_job(master, namespace, token="1")
        scripts = Scripts(master, keys)
        first = await scripts.ack_report(POOL, [_ack(job_id)], False, 1, False)
        assert (list(first.refused), list(first.unfit)) == ([], [])
        dirty = (await master.info("persistence"))["rdb_changes_since_last_save"]
        again = await scripts.ack_report(POOL, [_ack(job_id)], False, 1, False)  # (a re-send)
        assert (list(again.refused), list(again.unfit)) == ([], [])
        assert (await master.info("persistence"))["rdb_changes_since_last_save"] == dirty
        await master.replicaof("127.0.0.1", str(free_port()))  # demoted, its data as it was
        with pytest.raises(ReadOnlyError):
            await scripts.ack_report(POOL, [_ack(job_id)], False, 1, False)


async def test_a_master_still_refuses_and_fences_off_with_nothing_written(
    redis: Redis, namespace: str
) -> None:
    keys, job_id = await running_job(redis, namespace, token="2")  # another attempt's
    scripts = Scripts(redis, keys)
    before = await redis.zrange(keys.in_progress(POOL), 0, -1, withscores=True)
    report = await scripts.ack_report(POOL, [_ack(job_id)], False, 1, False)
    assert list(report.refused) == [job_id]
    assert await scripts.settle_report(POOL, _settles(keys, job_id)[:1]) == [False]
    await redis.hset(keys.attempts, job_id, "p0000000000000002:1")  # another pool's
    assert await scripts.settle_report(POOL, _settles(keys, job_id)[1:]) == [False]
    assert await redis.zrange(keys.in_progress(POOL), 0, -1, withscores=True) == before
    assert await redis.exists(keys.queue("work")) == 0
