"""ACL users: errands runs under a user confined to its namespace's keys and channels, with
only the commands it needs (no KEYS, FLUSH*, CONFIG, DEBUG...). ``ACL_RULE`` is the rule
docs/deployment.md gives; the test checks that the page shows exactly this one."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.asyncio import Redis
from redis.exceptions import NoPermissionError

from errands import Client, Enqueuer, Job, Workflow
from errands.cli.commands import main
from errands.store.keys import Keys
from errands.store.scripts import Acked, Scripts
from tests.support.infra import ClusterInfra, Node

from . import test_core_topologies as core
from .conftest import unique_namespace

ROOT = Path(__file__).resolve().parents[2]

# The commands errands sends itself and from its Lua scripts (Redis 7.0).
ACL_COMMANDS = (
    "-@all +ping +evalsha +script|load +multi +exec +watch +unwatch +time "
    "+get +set +del +exists +incr +incrby "
    "+hget +hset +hsetnx +hdel +hexists +hgetall +hkeys +hmget +hvals +hlen +hincrby "
    "+sadd +srem +scard +sismember +smembers "
    "+zadd +zrem +zcard +zscore +zmscore +zcount +zrange +zrangebyscore +zrangebylex +zrevrange "
    "+zremrangebyscore +zpopmin +pexpire +pttl +publish +subscribe +unsubscribe "
    "+llen +rpush +lpush +lpop +lrange +blpop"
)
OPTIONAL = "+info +dbsize +wait"  # Client.redis_info (dashboard), Enqueuer(wait_replicas=)
# Client.partitions() (the dashboard's queue pages), Client.find_job_ids() (its job search)
INSPECTION = "+hscan +zlexcount"
CLUSTER = "+cluster|slots +cluster|shards +command +asking +readonly"  # redis+cluster://


# a pool's fetch and ack as Redis Functions (optional); list and delete: other versions' libraries
FUNCTIONS = "+fcall +function|load +function|list +function|delete"


def refusals(admin: redis.Redis, user: str) -> list[dict[str, Any]]:
    """The ACL log's refusals of ``user``, but for ``CLIENT SETINFO``: redis-py sends it on
    connect to Redis 7.2+/Valkey and ignores the refusal, ``FUNCTION LOAD``: a pool tries
    it once, refused it calls its scripts with EVALSHA, and ``INFO``: a pool's start reads the
    eviction policy, refused it does not check it (docs/deployment.md says all three)."""
    log = admin.acl_log(count=1000)
    ignored = ("client|setinfo", "function|load", "info")
    return [e for e in log if e["username"] == user and e["object"] not in ignored]


async def workflow_wait_status_and_cancel(url: str, namespace: str) -> None:
    """A run to its end with ``wait()`` (which returns ``status()``), and a running run's
    ``status()`` and ``cancel()``: both read the run's waiting members with HKEYS."""
    pool = core.make_pool(url, namespace)
    started, gate = asyncio.Event(), asyncio.Event()

    @pool.job("step")
    async def step(job: Job, n: int) -> int:
        return n

    @pool.job("slow")
    async def slow(job: Job) -> None:
        started.set()
        await gate.wait()

    done = Workflow("done")
    done.add("step", {"n": 2}, id="b", after=[done.add("step", {"n": 1}, id="a")])
    stuck = Workflow("stuck")
    stuck.add("step", {"n": 3}, id="after", after=[stuck.add("slow", {}, id="s")])
    async with (
        Enqueuer.from_url(url, namespace=namespace) as enqueuer,
        Client.from_url(url, namespace=namespace) as client,
        pool,
    ):
        status = await (await enqueuer.enqueue_workflow(done)).wait(timeout=20)
        assert (status.status, status.counts()) == ("succeeded", {"succeeded": 2})
        run = await enqueuer.enqueue_workflow(stuck)
        await asyncio.wait_for(started.wait(), 10)
        assert (await run.status()).nodes["after"].state == "waiting"
        assert await client.workflow(run.id).cancel() is True
        assert (await run.wait(timeout=10)).status == "cancelled"
        gate.set()


async def cli_pause(url: str, namespace: str) -> None:
    """``errands pause NAME`` first checks that NAME is known: enqueued, or served (HKEYS of
    the limits hash)."""
    async with (
        Enqueuer.from_url(url, namespace=namespace) as enqueuer,
        Client.from_url(url, namespace=namespace) as client,
    ):
        await enqueuer.enqueue("report")
        argv = ["pause", "report", "--redis", url, "--namespace", namespace]
        assert await asyncio.to_thread(main, argv) == 0
        assert await client.paused() == {"report"}


Scenario = Callable[[str, str], Awaitable[None]]
SCENARIOS: dict[str, Scenario] = {
    "enqueue-process": core.test_enqueue_process_and_results,
    "retry-dead": core.test_retry_dead_and_dead_set_admin,
    "scheduled": core.test_scheduled_jobs_run_when_due,
    "unique": core.test_unique_jobs,
    "max-concurrency": core.test_max_concurrency_across_two_pools,
    "periodic": core.test_periodic_schedules,
    "reaper": core.test_reaper_gives_back_the_jobs_of_a_dead_pool,
    "client-admin": core.test_client_admin_calls,
    "workflow": workflow_wait_status_and_cancel,
    "cli-pause": cli_pause,
}


def acl_rule(namespace: str, password: str, commands: str = ACL_COMMANDS) -> list[str]:
    """The arguments of ``ACL SETUSER <user>`` for a user of one namespace."""
    keys = "errands:{" + namespace + "}:*"
    return ["reset", "on", f">{password}", f"~{keys}", f"&{keys}", *commands.split()]


def add_user(node: Node, namespace: str, commands: str = ACL_COMMANDS) -> str:
    """Create the namespace's user; returns its URL (the password is random)."""
    user, password = f"app-{namespace}", uuid.uuid4().hex
    node.call("ACL", "SETUSER", user, *acl_rule(namespace, password, commands))
    return f"redis://{user}:{password}@127.0.0.1:{node.port}/0"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    # DEBUG enabled: it is the ACL that must refuse it
    node = Node(tmp_path_factory.mktemp("acl"), "acl", ["--enable-debug-command", "yes"]).start()
    try:
        yield node
    finally:
        node.kill()


async def test_a_pool_calls_functions_as_a_user_allowed_them(server: Node) -> None:
    """With FCALL and FUNCTION LOAD, LIST and DELETE granted, a pool's fetch and ack are FCALLs:
    nothing refused, not even the load, nor the pruning of other versions' libraries."""
    namespace = unique_namespace()
    user = f"app-{namespace}"
    with server.client() as admin:
        before = admin.info("commandstats").get("cmdstat_fcall", {}).get("calls", 0)
    await core.test_enqueue_process_and_results(
        add_user(server, namespace, f"{ACL_COMMANDS} {FUNCTIONS}"), namespace
    )
    with server.client() as admin:
        log = admin.acl_log(count=1000)
        ignored = ("client|setinfo", "info")  # (INFO: the eviction policy, not granted)
        assert [e for e in log if e["username"] == user and e["object"] not in ignored] == []
        assert admin.info("commandstats").get("cmdstat_fcall", {}).get("calls", 0) > before


@pytest.mark.parametrize("scenario", list(SCENARIOS))
async def test_core_behaviours_as_a_confined_user(server: Node, scenario: str) -> None:
    namespace = unique_namespace()
    commands = ACL_COMMANDS + (" " + OPTIONAL if scenario == "client-admin" else "")
    await SCENARIOS[scenario](add_user(server, namespace, commands), namespace)
    with server.client() as admin:
        assert refusals(admin, f"app-{namespace}") == []


async def test_the_user_is_confined(server: Node) -> None:
    namespace = unique_namespace()
    url = add_user(server, namespace)
    with redis.Redis.from_url(url) as confined:
        confined.set(f"errands:{{{namespace}}}:mine", b"1")
        for forbidden in (
            lambda: confined.get("errands:{other}:jobs"),
            lambda: confined.publish("errands:{other}:wake", "x"),
            lambda: confined.keys("*"),
            lambda: confined.flushall(),
            lambda: confined.config_get("*"),
            lambda: confined.execute_command("DEBUG", "SLEEP", "0"),
            lambda: confined.eval("return 1", 0),
        ):
            with pytest.raises(NoPermissionError):
                forbidden()
    async with Client.from_url(url, namespace=namespace) as client:
        info = await client.redis_info()  # INFO and DBSIZE not granted: no data, no error
    assert info["version"] is None and info["keys"] is None


async def test_job_search_and_partitions_need_the_inspection_commands(server: Node) -> None:
    """``Client.find_job_ids()`` (the dashboard's job search) reads the jobs and history hashes
    with HSCAN: refused under the base rule, allowed with INSPECTION, as is
    ``Client.partitions()`` (the dashboard's queue pages)."""
    namespace = unique_namespace()
    jobs: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
        ("a", {}, {"job_id": f"order.{i}", "partition": f"t{i}"}) for i in range(3)
    ]
    base = add_user(server, namespace)
    async with Client.from_url(base, namespace=namespace) as client:
        with pytest.raises(NoPermissionError):
            await client.find_job_ids("order.")
    url = add_user(server, namespace, f"{ACL_COMMANDS} {INSPECTION}")
    with server.client() as admin:
        admin.execute_command("ACL", "LOG", "RESET")
    async with (
        Enqueuer.from_url(url, namespace=namespace) as enqueuer,
        Client.from_url(url, namespace=namespace) as client,
    ):
        await enqueuer.enqueue_many(jobs)
        assert await client.find_job_ids("order.") == ["order.0", "order.1", "order.2"]
        parts = await client.partitions("a")
        assert parts.ready == 3
        assert [(p.name, p.queued) for p in parts.items] == [("t0", 1), ("t1", 1), ("t2", 1)]
    with server.client() as admin:
        assert refusals(admin, f"app-{namespace}") == []


async def test_cluster_as_a_confined_user(cluster: ClusterInfra) -> None:
    namespace = unique_namespace()
    user, password = f"app-{namespace}", uuid.uuid4().hex
    for node in cluster.nodes:  # ACL users are per node
        node.call(
            "ACL", "SETUSER", user, *acl_rule(namespace, password, f"{ACL_COMMANDS} {CLUSTER}")
        )
    url = f"redis+cluster://{user}:{password}@" + ",".join(n.addr for n in cluster.nodes)
    await core.test_enqueue_process_and_results(url, namespace)
    await core.test_unique_jobs(url, namespace)
    for node in cluster.nodes:
        with node.client() as admin:
            assert refusals(admin, user) == []


async def test_enqueue_many_works_under_a_rule_without_zmscore(server: Node) -> None:
    """A rule written before the enqueue script read a batch's tombstones with one ZMSCORE: the
    script falls back to one ZSCORE per job (the ACL log shows the refusal)."""
    namespace = unique_namespace()
    url = add_user(server, namespace, ACL_COMMANDS.replace(" +zmscore", ""))
    keys = Keys(namespace)
    with server.client() as admin:
        admin.zadd(keys.ended, {"gone": 1})
    async with Enqueuer.from_url(url, namespace=namespace, strict=None) as enqueuer:
        jobs = await enqueuer.enqueue_many([("a", {}, {"job_id": i}) for i in ("gone", "new")])
        assert [j.existed for j in jobs] == [True, False]
    with server.client() as admin:
        assert {e["object"] for e in refusals(admin, f"app-{namespace}")} == {"zmscore"}
        assert admin.hkeys(keys.jobs) == [b"new"]


async def test_member_ids_are_taken_under_a_rule_without_zmscore(server: Node) -> None:
    """lib/wfids.lua reads the runs an id may be a member of with ZMSCORE (lib/chunked.lua
    read_zmscore): under an older rule with a ZSCORE each, and the same ids are taken (a run's
    waiting member's, its callback's), the others stored; wf_enqueue's reads of the run's own
    ids fall back the same."""
    namespace = unique_namespace()
    url = add_user(server, namespace, ACL_COMMANDS.replace(" +zmscore", ""))
    wf = Workflow("w", id="r")
    wf.add("a", {}, id="b", after=[wf.add("a", {}, id="a")])
    wf.on_success("a", {})
    async with Enqueuer.from_url(url, namespace=namespace, strict=None) as enqueuer:
        assert not (await enqueuer.enqueue_workflow(wf)).existed
        ids = ["r.b", "order.1", "r!on_success", "r!on_failure", "r.zz"]
        jobs = await enqueuer.enqueue_many([("a", {}, {"job_id": i}) for i in ids])
        assert [j.existed for j in jobs] == [True, False, True, False, False]
    with server.client() as admin:
        assert {e["object"] for e in refusals(admin, f"app-{namespace}")} == {"zmscore"}
        assert sorted(admin.hkeys(Keys(namespace).jobs)) == [
            b"order.1", b"r!on_failure", b"r.a", b"r.zz"]  # fmt: skip


async def test_an_ack_works_under_a_rule_without_zmscore(server: Node) -> None:
    """ack.lua reads the in-progress entries of a call's jobs with one ZMSCORE when the pool's
    set holds more than twice as many (a smaller set is read whole with one ZRANGE, no ZMSCORE
    asked: lib/chunked.lua read_held): under an older rule it reads each with its own ZSCORE
    instead (read_zmscore), and counts each slot given back once. One job of three acknowledged
    first (ZMSCORE refused, ZSCORE), then the two others (ZRANGE)."""
    namespace = unique_namespace()
    url = add_user(server, namespace, ACL_COMMANDS.replace(" +zmscore", ""))
    keys = Keys(namespace)
    async with Enqueuer.from_url(url, namespace=namespace, strict=None) as enqueuer:
        await enqueuer.enqueue_many([("a", {}, {}) for _ in range(3)])
    client = Redis.from_url(url)
    try:
        scripts = Scripts(client, keys)
        now = await scripts.heartbeat("p1", b"{}", 60_000, "register")
        got = await scripts.fetch("p1", now, 3, [("a", 0)])
        assert got is not None and len(got) == 3
        done = [Acked(f.id, "a", b"null", now, 0, 1, f.token) for f in got]
        with server.client() as admin:
            admin.execute_command("ACL", "LOG", "RESET")  # (the enqueue's refusal)
        assert await scripts.ack("p1", done[:1], False, now, True) == []
        with server.client() as admin:
            assert {e["object"] for e in refusals(admin, f"app-{namespace}")} == {"zmscore"}
            assert admin.zcard(keys.in_progress("p1")) == 2
            admin.execute_command("ACL", "LOG", "RESET")
        assert await scripts.ack("p1", done[1:], False, now, True) == []
    finally:
        await client.aclose()
    with server.client() as admin:
        assert {e["object"] for e in refusals(admin, f"app-{namespace}")} == set()
        assert admin.zcard(keys.in_progress("p1")) == 0
        assert int(admin.hget(keys.running, "a") or 0) == 0
        assert int(admin.hget(keys.stats, "processed") or 0) == 3


async def test_a_fetch_of_partitioned_jobs_works_under_a_rule_without_zmscore(
    server: Node,
) -> None:
    """REVIEW F10: lib/limits.lua lim_serve (90bd09a) reads a round's queue scores with
    ZMSCORE through redis.call: under a rule written before errands used ZMSCORE (or on
    Redis < 6.2) a fetch of partitioned jobs raised, after its first writes, on every call:
    partitioned jobs never ran. enqueue.lua and ack.lua fall back (redis.pcall); so does the
    ack's look at the freed partitions' turns (lib/limits.lua lim_release_all)."""
    namespace = unique_namespace()
    url = add_user(server, namespace, ACL_COMMANDS.replace(" +zmscore", ""))
    async with Enqueuer.from_url(url, namespace=namespace, strict=None) as enqueuer:
        await enqueuer.enqueue_many([("a", {}, {"partition": f"t{i}"}) for i in range(3)])
    client = Redis.from_url(url)
    try:
        scripts = Scripts(client, Keys(namespace))
        now = await scripts.heartbeat("p1", b"{}", 60_000, "register")
        with server.client() as admin:
            admin.execute_command("ACL", "LOG", "RESET")  # (the enqueue's refusal)
        got = await scripts.fetch("p1", now, 3, [("a", 0)], specs={"a": "c=1"})
        assert got is not None and len(got) == 3
        done = [Acked(f.id, "a", b"null", now, 0, 1, f.token) for f in got]
        assert await scripts.ack("p1", done, False, now, True) == []
    finally:
        await client.aclose()
    with server.client() as admin:
        assert {e["object"] for e in refusals(admin, f"app-{namespace}")} == {"zmscore"}
        assert admin.exists(Keys(namespace).partitions_running("a")) == 0


def test_the_deployment_docs_show_the_tested_rule() -> None:
    page = (ROOT / "docs" / "deployment.md").read_text()
    for part in (ACL_COMMANDS, OPTIONAL, INSPECTION, CLUSTER):
        assert " ".join(part.split()) in " ".join(page.split()), part


def test_every_command_of_every_script_is_in_the_rule() -> None:
    """Commands inside Lua scripts are checked against the user's rule too: a script that calls
    a command the documented rule lacks fails for every ACL user (seen: PEXPIRE, ZRANGEBYLEX)."""
    allowed = {c[1:].lower() for c in ACL_COMMANDS.split() if c.startswith("+")}
    lua = ROOT / "src" / "errands" / "store" / "lua"
    called: dict[str, set[str]] = {}
    for path in sorted(lua.rglob("*.lua")):
        for command in re.findall(r"redis\.p?call\(\s*'([A-Za-z]+)'", path.read_text()):
            called.setdefault(command.lower(), set()).add(path.name)
    assert called, "no script found"
    missing = {c: sorted(files) for c, files in called.items() if c not in allowed}
    assert not missing, f"commands called by scripts but not in the documented rule: {missing}"
