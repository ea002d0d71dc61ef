"""The orphan sweep (worker/orphans.py) holds the jobs in the pool's hand-off list: it read the
in-progress set and the list in two commands, which a failover under way can have answered by
two servers (one connection of the client on the new master, the next still on the old, which
answers reads from its data as it was). A job handed to the pool on the new master was read in
the set there and missed in the list on the old: swept back to its queue as an orphan, it ran
twice (the mailbox starts it from the list, a fetch from its queue). The list is now read in one
transaction with the attempts of the set's jobs, which fence each requeue (store/sweepread.py):
one server, one instant."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Connection, ConnectionPool, Redis

from errands import Enqueuer
from errands.store.keys import Keys
from errands.store.sweepread import in_progress_and_handoffs
from tests.scaleout.test_acl import ACL_COMMANDS
from tests.support.infra.nodes import own_node

from .test_handoff import handed
from .test_wake import QUIET, all_idle, make_pools, running, until


class _TwoServers(ConnectionPool):
    """Each connection taken reaches the next of two servers in turn, the first one first."""

    def __init__(self, first: int, second: int) -> None:
        super().__init__(host="127.0.0.1", port=first)
        self.ports, self.taken = (first, second), 0

    async def get_connection(self, *args: Any, **kwargs: Any) -> Connection:
        conn = Connection(host="127.0.0.1", port=self.ports[self.taken % 2])
        self.taken += 1
        await conn.connect()
        return conn

    async def release(self, connection: Any) -> None:
        await connection.disconnect()


async def test_a_job_handed_off_is_not_swept_by_reads_of_two_servers(
    redis: Redis, redis_url: str, namespace: str, tmp_path: Path
) -> None:
    keys = Keys(namespace)
    pools, started = make_pools(redis_url, namespace, 1, concurrency=2, poll_interval=QUIET)
    pool = pools[0]
    port = redis.connection_pool.connection_kwargs["port"]
    async with (
        own_node(tmp_path, "old") as old,
        running(pools),
        Enqueuer(redis, namespace=namespace) as enq,
    ):
        await all_idle(redis, keys, pools)
        worker = pool.worker
        assert worker is not None
        async with worker.mailbox.quiet():  # no BLPOP in flight: the job waits in the list
            job = await enq.enqueue("w")
            assert await redis.llen(keys.handoff(pool.id)) == 1
            # the sweep's reads: its first connection on this server (the new master), its
            # next on "old" (the old one, which never saw the job)
            own = worker.scripts.redis
            split = Redis(
                connection_pool=_TwoServers(port, old.connection_pool.connection_kwargs["port"])
            )
            worker.scripts.redis = split
            try:
                await worker._reclaim_orphans()
            finally:
                worker.scripts.redis = own
                await split.aclose()
            assert worker.reclaimed == 0
            assert await redis.zscore(keys.queue("w"), job.id) is None  # not swept
            assert await redis.zscore(keys.in_progress(pool.id), f"{job.id}:w") is not None
        await until(lambda: handed(pool) == 1 and len(started) == 1)
    assert started == [pool.id]


@pytest.mark.parametrize("refused", ["+lrange", "+multi"])
async def test_a_rule_that_refuses_the_list_or_the_transaction_reads_the_set_alone(
    tmp_path: Path, namespace: str, refused: str
) -> None:
    """An ACL rule of an older errands (without LRANGE: no hand-offs either; or without
    MULTI) reads the in-progress set as before."""
    keys = Keys(namespace)
    async with own_node(tmp_path, "acl") as admin:
        await admin.zadd(keys.in_progress("p1"), {"j1:w": 1, "j2:w": 2})
        await admin.hset(keys.attempts, mapping={"j1": "p1:7", "j2": "p2:8"})
        await admin.rpush(keys.handoff("p1"), b"x")
        user, password = f"app-{namespace}", "secret"
        rule = ACL_COMMANDS.replace(f" {refused} ", " ").replace(f" {refused}", "")
        assert rule != ACL_COMMANDS
        await admin.acl_setuser(
            user,
            enabled=True,
            passwords=[f"+{password}"],
            keys=[f"errands:{{{namespace}}}:*"],
            commands=rule.split(),
        )
        port = admin.connection_pool.connection_kwargs["port"]
        confined = Redis(host="127.0.0.1", port=port, username=user, password=password)
        try:
            raw, listed, tokens = await in_progress_and_handoffs(confined, keys, "p1")
        finally:
            await confined.aclose()
    assert (raw, listed) == ([b"j1:w", b"j2:w"], [] if refused == "+lrange" else [b"x"])
    assert tokens == {"j1": "7"}  # (j2's attempt is another pool's)
