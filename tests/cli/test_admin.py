"""The admin CLI as subprocesses: ``python -m errands inspect|dead|pause|unpause|cancel|enqueue``
against a real Redis; ``--json`` output parses; bad input exits non-zero with one clear line."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from errands import Job, JobStatus
from errands.store.devserver import RedisServer
from errands.store.keys import Keys
from tests.support.client_env import Env, until
from tests.support.commandstats import command_calls

ROOT = Path(__file__).resolve().parents[2]


class Result:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def json(self) -> Any:
        assert self.code == 0, self.err
        return orjson.loads(self.out)

    def __repr__(self) -> str:
        return f"<exit {self.code} out={self.out!r} err={self.err!r}>"


class Cli:
    """Runs ``python -m errands ...`` in a subprocess. At most ``parallel`` run at once (a test
    gathers a dozen: all at once they would share the machine's cores and each could take well
    over its deadline on a loaded machine), each within ``timeout`` seconds of its start."""

    def __init__(
        self, redis_url: str, namespace: str, *, parallel: int = 2, timeout: float = 60.0
    ) -> None:
        self.redis_url, self.namespace = redis_url, namespace
        self.timeout = timeout
        self._slots = asyncio.Semaphore(parallel)

    async def __call__(self, *args: str, redis_url: str | None = None) -> Result:
        async with self._slots:
            return await self._run(args, redis_url)

    async def _run(self, args: tuple[str, ...], redis_url: str | None) -> Result:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
        env.pop("ERRANDS_REDIS_URL", None)
        env.pop("ERRANDS_NAMESPACE", None)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "errands",
            *args,
            "--redis",
            redis_url or self.redis_url,
            "--namespace",
            self.namespace,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        try:
            async with asyncio.timeout(self.timeout):
                out, err = await proc.communicate()
        finally:
            if proc.returncode is None:  # timed out or cancelled: leave no process behind
                proc.kill()
                await proc.wait()
        assert proc.returncode is not None
        return Result(proc.returncode, out.decode(), err.decode())


@pytest.fixture
def cli(redis_url: str, namespace: str) -> Cli:
    return Cli(redis_url, namespace)


@pytest.fixture
async def env(redis: Redis, namespace: str) -> AsyncIterator[Env]:
    e = Env(redis, namespace, shutdown_grace=0.5)
    yield e
    await e.pool.stop()


def register(env: Env) -> None:
    @env.pool.job("ok")
    async def ok(job: Job) -> dict[str, Any]:
        return {"echo": job.args}

    @env.pool.job("boom", max_fails=3)
    async def boom(job: Job) -> None:
        raise RuntimeError("boom")

    @env.pool.job("fatal", max_fails=1)
    async def fatal(job: Job) -> None:
        raise ValueError("fatal")


def one_clear_line(r: Result, *needles: str) -> None:
    """Failed with a non-zero status and a single ``errands: ...`` line naming ``needles``."""
    assert r.code != 0, r
    assert "Traceback" not in r.err, r
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("errands: "), r
    for needle in needles:
        assert needle in lines[0], (needle, r)


# -- inspect ---------------------------------------------------------------------------------
async def test_inspect_pools_shows_a_quiet_pool(env: Env, cli: Cli) -> None:
    register(env)
    await env.pool.start()
    [pool] = (await cli("inspect", "pools", "--json")).json()
    assert pool["id"] == env.pool.id and pool["quiet_since"] is None
    await env.pool.quiet()
    assert env.pool.quiet_since is not None
    [pool] = (await cli("inspect", "pools", "--json")).json()
    assert pool["quiet_since"] == pytest.approx(env.pool.quiet_since)
    table = await cli("inspect", "pools")
    assert table.code == 0, table
    header, row = table.out.splitlines()[1:3]
    assert "QUIET_SINCE" in header.split()
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(env.pool.quiet_since))
    assert since in row, table.out


@pytest.mark.timeout(300)  # a dozen CLI processes, two at a time, on a loaded machine
async def test_inspect_everything(env: Env, cli: Cli) -> None:
    register(env)
    gate = asyncio.Event()

    @env.pool.job("slow")
    async def slow(job: Job) -> None:
        await job.checkin("busy")
        await gate.wait()

    finished = await env.enqueuer.enqueue("ok", {"x": 1})
    retrying = await env.enqueuer.enqueue("boom", {"x": 2})
    dead = await env.enqueuer.enqueue("fatal", {"x": 3})
    await env.pool.drain(timeout=5)
    scheduled = await env.enqueuer.enqueue("ok", {"x": 4}, delay=600)
    await env.pool.start()
    running = await env.enqueuer.enqueue("slow", {"x": 5})
    assert finished and retrying and dead and scheduled and running
    await until(lambda: _checked_in(env))

    results = await asyncio.gather(
        cli("inspect", "queues", "--json"),
        cli("inspect", "workers", "--json"),
        cli("inspect", "pools", "--json"),
        cli("inspect", "scheduled", "--json"),
        cli("inspect", "retry", "--json"),
        cli("inspect", "dead", "--json"),
        cli("inspect", "history", "--json"),
        cli("inspect", "history", "--job-name", "boom", "--json"),
        cli("inspect", "job", finished.id, "--json"),
        cli("inspect", "job", dead.id, "--json"),
        cli("inspect", "counts", "--json"),
        cli("inspect", "dead", "--page", "2", "--json"),
    )
    queues, workers, pools, sched, retry, dead_, hist, hist_boom, job_ok, job_dead, counts, p2 = (
        r.json() for r in results
    )
    by_name = {q["name"]: q for q in queues}
    assert by_name["ok"]["scheduled"] == 1 and by_name["slow"]["running"] == 1
    assert set(by_name["ok"]) >= {"queued", "latency", "paused", "max_concurrency", "running"}
    assert [(w["job_id"], w["checkin"]["message"]) for w in workers] == [(running.id, "busy")]
    assert [p["id"] for p in pools] == [env.pool.id] and pools[0]["busy"] == 1
    assert [j["id"] for j in sched] == [scheduled.id]
    assert [j["id"] for j in retry] == [retrying.id]
    assert retry[0]["error"] == "RuntimeError: boom"  # listings show the error line
    assert [j["id"] for j in dead_] == [dead.id]
    assert {(h["id"], h["status"]) for h in hist} == {
        (finished.id, "finished"),
        (retrying.id, "failed"),
        (dead.id, "dead"),
    }
    assert [h["id"] for h in hist_boom] == [retrying.id]
    assert job_ok["status"] == JobStatus.FINISHED and job_ok["result"] == {"echo": {"x": 1}}
    assert job_ok["duration"] == 0 and job_ok["attempts"] == 1
    assert job_dead["status"] == JobStatus.DEAD
    assert job_dead["error"]["error"] == "ValueError: fatal"
    assert "Traceback" in job_dead["error"]["traceback"]
    assert {c["status"]: c["count"] for c in counts} == {
        "queued": 0,
        "scheduled": 1,
        "in_progress": 1,
        "retrying": 1,
        "finished": 1,
        "dead": 1,
        "cancelled": 0,
    }
    assert p2 == []

    # readable tables on a terminal
    tables = await asyncio.gather(
        cli("inspect", "queues"),
        cli("inspect", "dead"),
        cli("inspect", "job", dead.id),
        cli("inspect", "history"),
        cli("inspect", "workers"),
    )
    assert all(t.code == 0 and t.err == "" for t in tables), tables
    where = f"{cli.redis_url}, namespace {cli.namespace!r}"
    assert all(t.out.splitlines()[0] == where for t in tables), tables
    assert tables[0].out.splitlines()[1].split()[:3] == ["NAME", "QUEUED", "SCHEDULED"]
    assert "ValueError: fatal" in tables[1].out and "page 1 of 1 (1 jobs)" in tables[1].out
    assert "status: dead" in tables[2].out
    # the error as text, its traceback as printed (issue 16), not a dict on one line
    assert "       error: ValueError: fatal (attempt 1)\n" in tables[2].out, tables[2].out
    assert "   traceback:\n    Traceback (most recent call last):\n" in tables[2].out
    assert "{'error'" not in tables[2].out and '"traceback"' not in tables[2].out
    header, *rows = tables[0].out.splitlines()[1:]
    assert header.split()[-3:] == ["MAX_CONCURRENCY", "LATENCY", "SERVED"]
    assert all(r.split()[-1] == "yes" and "no limit" in r for r in rows), rows
    assert "no running pool serves" not in tables[0].out
    assert "page 1 of 1 (3 attempts)" in tables[3].out
    assert running.id in tables[4].out
    gate.set()


async def _checked_in(env: Env) -> bool:
    return any(w.checkin for w in await env.client.workers())


# -- actions ---------------------------------------------------------------------------------
async def test_dead_retry_and_delete(env: Env, cli: Cli) -> None:
    register(env)
    jobs = [await env.enqueuer.enqueue("fatal", {"i": i}) for i in range(4)]
    await env.pool.drain(timeout=5)
    ids = [j.id for j in jobs if j]
    r = await cli("dead", "retry", ids[0])
    assert (r.code, r.out.strip()) == (0, f"retry {ids[0]}: done"), r
    info = await env.client.job(ids[0])
    assert info is not None and info.status == JobStatus.QUEUED and info.fails == 0
    assert (await cli("dead", "delete", ids[1], "--json")).json() == {
        "action": "delete",
        "id": ids[1],
    }
    assert await env.client.job(ids[1]) is None
    assert (await cli("dead", "retry", "--all", "--json")).json() == {
        "action": "retry",
        "count": 2,
    }
    assert await env.client.dead_count() == 0
    await env.pool.drain(timeout=5)
    assert await env.client.dead_count() == 3
    r = await cli("dead", "delete", "--all")
    assert (r.code, r.out.strip()) == (0, "delete 3 dead jobs"), r
    assert await env.client.dead_count() == 0
    one_clear_line(await cli("dead", "retry", "nope"), "no dead job 'nope'")
    one_clear_line(await cli("dead", "retry"), "give a job id or --all")
    one_clear_line(await cli("dead", "delete", ids[0], "--all"), "give a job id or --all")


async def test_pause_unpause_and_cancel(env: Env, cli: Cli) -> None:
    # a name no pool serves and nothing was enqueued under is a typo (issue 16)
    r = await cli("pause", "ok")
    one_clear_line(r, f"no job type 'ok' in namespace {cli.namespace!r}")
    assert r.code == 1 and "--force pauses it anyway" in r.err
    assert await env.client.paused() == set()
    r = await cli("pause", "ok", "--force")
    assert (r.code, r.out.strip()) == (0, "paused ok"), r
    await env.client.unpause("ok")
    register(env)
    await env.pool.start()  # publishes its job names
    r = await cli("pause", "okk")
    one_clear_line(r, "no job type 'okk'")
    assert "did you mean 'ok'?" in r.err
    r = await cli("pause", "ok")
    assert (r.code, r.out.strip()) == (0, "paused ok"), r
    assert await env.client.paused() == {"ok"}
    assert (await cli("unpause", "ok", "--json")).json() == {"unpaused": "ok"}
    assert await env.client.paused() == set()
    one_clear_line(await cli("pause", "bad name"), "invalid job name")

    job = await env.enqueuer.enqueue("ok", {}, delay=60)
    assert job is not None
    r = await cli("cancel", job.id)
    assert (r.code, r.out.strip()) == (0, f"cancel {job.id}: cancelled"), r
    info = await env.client.job(job.id)
    assert info is not None and info.status == JobStatus.CANCELLED
    assert (await cli("cancel", job.id, "--json")).json() == {"id": job.id, "outcome": "already"}
    one_clear_line(await cli("cancel", "nope"), "no job 'nope'")


async def test_enqueue(env: Env, cli: Cli) -> None:
    r = await cli("enqueue", "report", "--args", '{"x": 1}', "--in", "5m")
    assert r.code == 0, r
    assert r.err == (
        f"errands: warning: no running pool serves job name 'report' in namespace "
        f"{cli.namespace!r} (no pool is running); the job waits until one does\n"
    )
    job_id = r.out.strip()
    info = await env.client.job(job_id)
    assert info is not None
    assert (info.name, info.args, info.status) == ("report", {"x": 1}, JobStatus.SCHEDULED)
    assert info.due_at is not None and abs(info.due_at - (time.time() + 300)) < 10
    r = await cli("enqueue", "report", "--args", '{"y": [1, 2]}', "--priority", "5", "--json")
    now = await env.client.job(r.json()["id"])
    assert now is not None and now.status == JobStatus.QUEUED
    assert (now.args, now.priority) == ({"y": [1, 2]}, 5)
    r = await cli("enqueue", "report", "--in", "1h30m", "--json")
    later = await env.client.job(r.json()["id"])
    assert later is not None and later.args == {}
    assert later.due_at is not None and abs(later.due_at - (time.time() + 5400)) < 10


# -- bad input -------------------------------------------------------------------------------
@pytest.mark.timeout(300)  # a dozen CLI processes, two at a time, on a loaded machine
async def test_bad_input_exits_with_one_clear_line(cli: Cli, namespace: str) -> None:
    unreachable = "redis://127.0.0.1:1/0"
    results = await asyncio.gather(
        cli("inspect", "job", "no-such-job"),
        cli("inspect", "job"),
        cli("enqueue", "report", "--args", "{not json"),
        cli("enqueue", "report", "--args", "[1, 2]"),
        cli("enqueue", "report", "--args", '"text"'),
        cli("enqueue", "report", "--in", "5 minutes"),
        cli("enqueue", "report", "--in=-5m"),
        cli("enqueue", "report", "--in", ""),
        cli("enqueue", "bad name"),
        cli("inspect", "queues", redis_url=unreachable),
        cli("cancel", "x", redis_url=unreachable),
        cli("enqueue", "report", redis_url="redis://user:secret@127.0.0.1:1/0"),
        cli("inspect", "queues", redis_url="notaurl://x"),
        cli("inspect", "history", "--job-name", "bad{name"),
    )
    (
        unknown,
        no_id,
        bad_json,
        not_object,
        string,
        bad_duration,
        negative,
        empty,
        bad_name,
        down,
        down_cancel,
        down_secret,
        bad_url,
        bad_filter,
    ) = results
    one_clear_line(unknown, "no job 'no-such-job'")
    assert unknown.code == 1
    one_clear_line(no_id, "needs a job id")
    one_clear_line(bad_json, "--args is not valid JSON")
    one_clear_line(not_object, "--args must be a JSON object")
    one_clear_line(string, "--args must be a JSON object")
    one_clear_line(bad_duration, "invalid duration '5 minutes'")
    one_clear_line(negative, "invalid duration '-5m'")
    one_clear_line(empty, "invalid duration ''")
    one_clear_line(bad_name, "invalid job name 'bad name'")
    one_clear_line(down, "cannot reach Redis at redis://127.0.0.1:1/0")
    one_clear_line(down_cancel, "cannot reach Redis at redis://127.0.0.1:1/0")
    one_clear_line(down_secret, "redis://user:***@127.0.0.1:1/0")
    assert "secret" not in down_secret.err
    one_clear_line(bad_url, "notaurl://x")
    one_clear_line(bad_filter, "bad{name")
    # nothing was enqueued by the rejected commands
    assert all(r.out == "" for r in results)


async def test_a_refusal_of_redis_is_one_clear_line(namespace: str) -> None:
    """Redis refuses a command after the connection's check (over maxmemory: OOM): one line
    naming the error, exit status 1 (it was a traceback)."""
    with RedisServer() as server:
        async with Redis.from_url(server.url) as redis:
            await redis.config_set("maxmemory-policy", "noeviction")
            await redis.config_set("maxmemory", "1")
            cli = Cli(server.url, namespace)
            enqueue, pause = await asyncio.gather(
                cli("enqueue", "report"), cli("pause", "report", "--force")
            )
            await redis.config_set("maxmemory", "0")
    for r in (enqueue, pause):
        one_clear_line(r, "Redis error (OutOfMemoryError)", "maxmemory")
        assert r.code == 1


async def test_inspect_a_far_page_reads_only_the_sizes(
    own_url: str, own_redis: Redis, namespace: str
) -> None:
    """``inspect history|scheduled --page N`` passes N to the Client as given: a page past the
    end is empty, with the total, at the cost of a ZCARD of each name (it read every entry of
    every name up to page N)."""
    keys = Keys(namespace)
    for name in ("a", "b", "c"):
        await own_redis.sadd(keys.names, name)
        await own_redis.zadd(keys.history_of(name), {f"{name}{i}:1": i for i in range(30)})
        await own_redis.zadd(keys.scheduled(name), {f"{name}{i}": i for i in range(30)})
    await own_redis.config_resetstat()
    cli = Cli(own_url, namespace)
    history = await cli("inspect", "history", "--page", "1000000")
    scheduled = await cli("inspect", "scheduled", "--page", "6", "--json")
    calls = await command_calls(own_redis)
    assert history.code == 0 and "page 1000000 of 5 (90 attempts)" in history.out, history
    assert scheduled.json() == []
    assert {"zrange", "zrevrange", "hmget"}.isdisjoint(calls), calls


async def test_the_hint_of_namespaces_serving_names_keeps_to_one_deadline(
    own_redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``inspect queues``' hint read each other namespace without a bound (only its SCAN had
    one): a server slow to answer those reads held the command. Now the whole hint has one
    deadline, and says what it found by then."""
    from errands import Client
    from errands.cli import hints

    quick, slow = f"{namespace}-a", f"{namespace}-b"
    for other in (quick, slow):
        await own_redis.zadd(Keys(other).pools, {"p": 1})
    stuck = asyncio.Event()

    async def served(redis: Any, keys: Keys) -> set[str]:
        if keys.namespace == slow:
            await stuck.wait()  # (never set: a read that does not answer)
        return {"send_email"}

    monkeypatch.setattr(hints, "served_names", served)
    monkeypatch.setattr(hints, "HINT_SECONDS", 0.2, raising=False)
    client = Client(own_redis, namespace=namespace)
    started = time.monotonic()
    hint = await asyncio.wait_for(hints.served_elsewhere(client, ["send_email"]), 10)
    assert hint == f"; pools of namespace {quick!r} serve send_email"
    assert time.monotonic() - started < 5
