"""The enqueue script's type checks before its first write cover the keys the call writes, and
only those (lua/enqueue.lua: a call of jobs due now without priority or partition checks
jobs, names, and its names' queues and idle pools); the one-job request (store/bulk.py)."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from errands.store.bulk import enqueue_request, job_spec, one_job_command, pack_evalsha
from errands.store.keys import Keys
from errands.store.scripts import Scripts

LATER = 10**13  # a due time in ms far ahead: the job goes to the scheduled set

# (key family, the spec of a job of name "a" that writes it)
WRITTEN = [
    ("jobs", job_spec(1, 0, 0, "")),
    ("names", job_spec(1, 0, 0, "")),
    ("queue", job_spec(1, 0, 0, "")),
    ("idle_for", job_spec(1, 0, 0, "")),
    ("scheduled", job_spec(1, 0, LATER, "")),
    ("priorities", job_spec(1, 5, 0, "")),
    ("partitions", job_spec(1, 0, LATER, "p")),
    ("partition_queue", job_spec(1, 0, 0, "p")),
    ("partitions_ready", job_spec(1, 0, 0, "p")),
]
# (key family, the spec of a job of name "a" that leaves it alone)
UNTOUCHED = [
    ("scheduled", job_spec(1, 0, 0, "")),
    ("queue", job_spec(1, 0, LATER, "")),
    ("idle_for", job_spec(1, 0, LATER, "")),
    ("priorities", job_spec(1, 0, 0, "")),
    ("partitions", job_spec(1, 0, 0, "")),
    ("partition_queue", job_spec(1, 0, LATER, "p")),
    ("partitions_ready", job_spec(1, 0, 0, "")),
    ("idle", job_spec(1, 0, 0, "")),  # one name: no pool of another name to look for
]


def _key(keys: Keys, family: str) -> str:
    attr = getattr(keys, family)
    return attr if isinstance(attr, str) else attr("a")


@pytest.mark.parametrize(("family", "spec"), WRITTEN)
async def test_a_wrong_typed_key_the_call_writes_fails_it_before_any_write(
    redis: Redis, namespace: str, family: str, spec: str
) -> None:
    keys = Keys(namespace)
    await redis.set(_key(keys, family), "not mine")
    call = (["a"], ["j"], [b"{}"], [spec])
    with pytest.raises(ResponseError, match=r"WRONGTYPE .* no job of this call was stored"):
        await Scripts(redis, keys).enqueue_columns(call)
    assert await redis.get(keys.seq) is None
    assert await redis.type(keys.jobs) in (b"none", b"string")


async def test_a_wrong_typed_idle_set_fails_a_call_of_two_names(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    await redis.set(keys.idle, "not mine")
    call = (["a", "b"], ["j", "k"], [b"{}", b"{}"], [job_spec(1, 0, 0, ""), job_spec(2, 0, 0, "")])
    with pytest.raises(ResponseError, match=r"WRONGTYPE .* no job of this call was stored"):
        await Scripts(redis, keys).enqueue_columns(call)
    assert await redis.get(keys.seq) is None and await redis.hlen(keys.jobs) == 0


@pytest.mark.parametrize(("family", "spec"), UNTOUCHED)
async def test_a_wrong_typed_key_the_call_leaves_alone_does_not_fail_it(
    redis: Redis, namespace: str, family: str, spec: str
) -> None:
    """Checked before: every key of the call, nine type checks for one job due now."""
    keys = Keys(namespace)
    await redis.set(_key(keys, family), "not mine")
    call = (["a"], ["j"], [b"{}"], [spec])
    assert await Scripts(redis, keys).enqueue_columns(call) == []
    assert await redis.hget(keys.jobs, "j") == b"{}"
    assert await redis.get(_key(keys, family)) == b"not mine"


@pytest.mark.parametrize(
    ("priority", "due", "partition"),
    [(0, 0, ""), (5, 0, ""), (0, LATER, "p"), (-3, 0, "eu"), (0, 0, "zoné")],
)
@pytest.mark.parametrize(("name", "job_id"), [("a", "j"), ("sénd", "idé-1")])
def test_the_one_job_command_is_the_general_one_packed(
    priority: int, due: int, partition: str, name: str, job_id: str
) -> None:
    keys, heads, sha = Keys("nś"), {}, "f" * 40  # type: ignore[var-annotated]
    spec = job_spec(1, priority, due, partition)
    general = pack_evalsha(sha, *enqueue_request(keys, [name], [job_id], [b"{}\r\n"], [spec]))
    for _ in range(2):  # the name's part packed, then reused
        command = one_job_command(keys, sha.encode(), heads, name, job_id, b"{}\r\n", spec)
        assert command == general
    assert list(heads) == [name]
