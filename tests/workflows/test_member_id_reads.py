"""lib/wfids.lua reads the index of runs and their nodes once per call, not once per id: a
call of many ids that a workflow member's could be (holding '.' or ending in a callback's
name) sends one ZMSCORE of all their candidate runs per 1,000, then one HMGET per run found
(per 1,000 of its nodes asked). It sent a ZMSCORE per id and an HEXISTS per candidate run
found: 2,000 dotted ids of a call cost 2,000 ZMSCORE, and a run of 2,000 members stored with a
dotted id 2,000 ZMSCORE and 2,000 HEXISTS. Which ids are taken is unchanged (the same ids
refused and stored in one call, a callback's, a node holding '!', the run's own nodes)."""

from __future__ import annotations

from redis.asyncio import Redis

from errands.store.keys import Keys
from errands.store.scripts import Scripts
from errands.workflows.store import Member, WorkflowScripts
from tests.support.commandstats import command_calls

LOOKUPS = ("zmscore", "zscore", "hexists", "hmget")


def member(node: str, ready: bool = True) -> Member:
    spec = b'{"n":"work","f":"fail","p":0,"d":[]}'
    return Member(node, "work", ready, 0, b'{"id":"' + node.encode() + b'"}', spec)


async def stored_run(redis: Redis, keys: Keys, run: str, nodes: list[str]) -> None:
    callbacks = [("on_success", b"{}", b'{"n":"work","f":"fail","p":0,"d":[]}')]
    members = [member(n) for n in nodes]
    assert await WorkflowScripts(redis, keys).enqueue(run, "wf", 60_000, members, [], callbacks)


async def lookups(redis: Redis) -> dict[str, int]:
    calls = await command_calls(redis)
    return {c: calls.get(c, 0) for c in LOOKUPS}


async def test_an_enqueue_of_2000_dotted_ids_reads_the_runs_once(
    own_redis: Redis, namespace: str
) -> None:
    """One call: 1,000 ids of run r1's shape (its node absent, but "r1.a": taken) and 1,000
    of no stored run. Its own reads (HMGET of jobs, ZMSCORE of ended: one per 1,000) and
    wfids': one ZMSCORE of the candidate runs, one HMGET of r1's nodes."""
    keys = Keys(namespace)
    await stored_run(own_redis, keys, "r1", ["a", "b"])
    ids = [f"r1.x{i}" for i in range(999)] + ["r1.a"] + [f"order.{i}" for i in range(1000)]
    jobs = [[1, "work", i, b"{}", 0, 0, ""] for i in ids]
    await own_redis.config_resetstat()
    assert await Scripts(own_redis, keys).enqueue(["work"], jobs) == [999]
    assert await lookups(own_redis) == {"zmscore": 3, "zscore": 0, "hexists": 0, "hmget": 3}
    assert await own_redis.hlen(keys.jobs) == 1999 + 2  # (and r1's members, queued by the run)


async def test_a_run_of_2000_dotted_members_reads_another_run_once(
    own_redis: Redis, namespace: str
) -> None:
    """Run "w.x" while run "w" is stored: each member "w.x.n<i>" may be w's node "x.n<i>".
    wf_enqueue's own reads (EXISTS, HMGET of jobs, ZMSCORE of ended: one per 1,000), then
    wfids': one ZMSCORE (of "w": "w.x" is the run itself), two HMGET of w's nodes."""
    keys = Keys(namespace)
    await stored_run(own_redis, keys, "w", ["a"])
    nodes = [f"n{i}" for i in range(2000)]
    await own_redis.config_resetstat()
    assert await WorkflowScripts(own_redis, keys).enqueue(
        "w.x", "wf", 60_000, [member(n) for n in nodes], [], []
    )
    assert await lookups(own_redis) == {"zmscore": 3, "zscore": 0, "hexists": 0, "hmget": 4}
    assert await own_redis.hlen(keys.workflow_of) == 1 + 2000


async def test_the_ids_taken_are_unchanged(own_redis: Redis, namespace: str) -> None:
    """In one call: a member's and a callback's id refused; a callback the run lacks, a node
    holding '!' (the run's nodes hash holds "!on_success", a callback's), a node of no run, a
    run that is not stored, a longer node than 120 characters, stored."""
    keys = Keys(namespace)
    await stored_run(own_redis, keys, "r", ["a", "b.c"])
    await own_redis.config_resetstat()
    ids = [
        "r.b",  # (run r's node is "b.c")
        "r.b.c",  # taken
        "r!on_success",  # taken
        "r!on_failure",
        "r.!on_success",
        "r.zz",
        "q.a",
        "r." + "a" * 121,
        "r.a",  # taken (also in jobs: the member is queued)
    ]
    jobs = [[1, "work", i, b"{}", 0, 0, ""] for i in ids]
    assert await Scripts(own_redis, keys).enqueue(["work"], jobs) == [1, 2, 8]
    assert {c: n for c, n in (await lookups(own_redis)).items() if n} == {"zmscore": 2, "hmget": 2}


async def test_a_runs_nodes_of_another_type_hold_no_member(redis: Redis, namespace: str) -> None:
    """A run in the index whose nodes key holds another type: its ids are not taken (read with
    redis.pcall, not raised), the others of the call looked up as ever."""
    keys = Keys(namespace)
    await stored_run(redis, keys, "r", ["a"])
    await redis.zadd(keys.workflows, {"q": 1})
    await redis.set(keys.workflow("q", "nodes"), "x")
    jobs = [[1, "work", i, b"{}", 0, 0, ""] for i in ("q.a", "r.b", "r!on_success")]
    assert await Scripts(redis, keys).enqueue(["work"], jobs) == [2]
    assert await redis.hexists(keys.jobs, "q.a")


async def test_the_own_runs_nodes_are_not_looked_up(redis: Redis, namespace: str) -> None:
    """wf_enqueue stores run "r" with node "n": its own nodes hash (here left holding "n" with
    the run's index entry, its meta gone) is not read for its members' ids."""
    keys = Keys(namespace)
    await redis.zadd(keys.workflows, {"r": 1})
    await redis.hset(keys.workflow("r", "nodes"), "n", "{}")
    assert await WorkflowScripts(redis, keys).enqueue("r", "wf", 60_000, [member("n")], [], [])
    await redis.zadd(keys.workflows, {"s": 1})
    await redis.hset(keys.workflow("s", "nodes"), "r.n", "{}")  # ("s.r.n": another run's)
    assert not await WorkflowScripts(redis, keys).enqueue(
        "s.r", "wf", 60_000, [member("n")], [], []
    )


async def test_wf_add_reads_the_index_of_runs_once(own_redis: Redis, namespace: str) -> None:
    """wf_add's key checks (lib/wfkeys.lua wf_unfit) count the index of runs (ZCARD); its
    member's id "r.x.y" asks one ZMSCORE of its candidate run "r.x" then, no second ZCARD: 10
    ZCARD in all where it asked 11."""
    keys = Keys(namespace)
    await stored_run(own_redis, keys, "r", ["a"])
    await own_redis.config_resetstat()
    wf = WorkflowScripts(own_redis, keys)
    assert await wf.add("r", member("x.y"), [], []) == ""
    calls = await command_calls(own_redis)
    assert (calls.get("zcard"), calls.get("zmscore"), calls.get("hexists", 0)) == (10, 1, 4)
