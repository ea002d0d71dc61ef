"""A dedup enqueue whose first send stored its job ("enqueued") and whose reply was lost: redis-py
sends the call again, and enqueue_dedup.lua finds the job id taken by a job with another envelope
(a later enqueue of the key replaced the waiting job's args) or ended (it ran meanwhile), and
answers "existed". ``Enqueuer.enqueue`` returned a Job with ``existed`` set and no ``dedup`` for
the job it had just stored. An id the enqueue drew itself (no ``job_id=``) can only have been
stored by the call's own first send, so that answer is read as "enqueued" (no Redis cost); with
a ``job_id=`` given it stays "existed", as for a plain enqueue (docs/dedup.md)."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis

from errands import Dedup, Enqueuer
from errands.store.keys import Keys
from errands.store.records import Acked
from errands.store.scripts import Scripts

NOW = 1_767_225_600_000
POOL = "p1"


@pytest.mark.parametrize("between", ["replaced", "finished"])
@pytest.mark.parametrize("job_id", [None, "mine"])
async def test_a_resent_enqueued_answers_enqueued(
    redis: Redis, namespace: str, between: str, job_id: str | None
) -> None:
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    enq = Enqueuer(redis, namespace=namespace, strict=None)
    enq.scripts = scripts
    await scripts.heartbeat(POOL, b"{}", 60_000, mode="register")
    d = Dedup("k", debounce=True) if between == "replaced" else Dedup("k", until="finished")
    script = scripts._s["enqueue_dedup"]
    replies: list[Any] = []

    async def lost_reply(keys: Any = (), args: Any = (), client: Any = None) -> Any:
        replies.append(await script(keys=keys, args=args))
        if len(replies) > 1:
            return replies[-1]
        if between == "replaced":  # a later enqueue of the key gives the waiting job its args
            assert (await enq.enqueue("report", {"v": 2}, dedup=d)) is not None
        else:  # the job ran meanwhile
            got = await scripts.fetch(POOL, NOW, 10, [("report", 0)])
            assert got is not None and len(got) == 1
            done = [Acked(got[0].id, "report", b"1", NOW, 60_000, 1, token=got[0].token)]
            assert await scripts.ack(POOL, done, False, NOW, True) == []
        return await script(keys=keys, args=args)  # the re-send: the first reply was lost

    scripts._s["enqueue_dedup"] = lost_reply  # type: ignore[assignment]
    job = await enq.enqueue("report", {"v": 1}, dedup=d, job_id=job_id)
    assert job is not None
    assert replies[0][0] == b"enqueued"
    if job_id is None:
        assert not job.existed
        assert job.dedup is not None and job.dedup.status == "enqueued"
        assert job.dedup.holder == job.id == replies[0][1].decode()
    else:  # (a caller's id: the answer of a plain enqueue, which cannot tell)
        assert job.existed and job.dedup is None


async def test_a_serializer_error_is_its_own_not_redis_unavailable(
    redis: Redis, namespace: str
) -> None:
    # the envelope is encoded before the call: a serializer's ConnectionError (say, a schema
    # registry out of reach) reaches the caller as itself, as on the plain path, not as
    # RedisUnavailableError
    from errands.serialization import JSONSerializer

    class Unreachable(JSONSerializer):
        def dumps(self, obj: Any) -> bytes:
            raise ConnectionError("schema registry unreachable")

    enq = Enqueuer(redis, namespace=namespace, strict=None, serializer=Unreachable())
    for dedup in (None, Dedup("k")):
        with pytest.raises(ConnectionError, match="schema registry") as raised:
            await enq.enqueue("report", {"v": 1}, dedup=dedup)
        assert type(raised.value) is ConnectionError
