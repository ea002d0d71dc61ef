"""Every script the Lua audit touched, re-sent: redis-py sends a script call again (the same
KEYS and ARGV) when the reply to the first send is lost. For each realistic call, the re-send
must write nothing (a snapshot of every key of the namespace is unchanged) and give the same
answer, but where a row says why not."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from redis.asyncio import Redis

from errands import Dedup, Enqueuer, Workflow
from errands.periodic.store import ScheduleStore, make_periodic
from errands.store.keys import Keys
from errands.store.scripts import Scripts
from errands.workflows.store import WorkflowScripts
from tests.support.invariants import assert_invariants
from tests.support.resend import Recorder, snapshot

NOW = 1_767_225_600_000  # 2026-01-01T00:00:00Z, ms


@dataclass
class World:
    redis: Redis
    namespace: str
    keys: Keys
    scripts: Scripts
    store: ScheduleStore
    enqueuer: Enqueuer
    workflows: WorkflowScripts

    def record(self, name: str) -> Recorder:
        """Record the calls of script ``name`` (schedule_* from the schedule store, wf_* from
        the workflow scripts)."""
        if name.startswith("wf_"):
            rec = Recorder(self.workflows._s[name])
            self.workflows._s[name] = rec  # type: ignore[assignment]
        elif name.startswith("schedule_"):
            attr = "_fire" if name == "schedule_fire" else "_register"
            rec = Recorder(getattr(self.store, attr))
            setattr(self.store, attr, rec)
        else:
            rec = Recorder(self.scripts._s[name])
            self.scripts._s[name] = rec  # type: ignore[assignment]
        return rec

    async def fetched_by(self, pool: str, name: str) -> None:
        """Pool ``pool`` (registered now) fetches the jobs of ``name``."""
        await self.scripts.heartbeat(pool, b"{}", 60_000, mode="register")
        assert await self.scripts.fetch(pool, NOW, 10, [(name, 0)]) is not None


Call = Callable[[World], Awaitable[Any]]


async def unique_now(w: World) -> Any:
    return await w.enqueuer.enqueue_unique("report", {"day": 1})


async def unique_later_partitioned(w: World) -> Any:
    return await w.enqueuer.enqueue_unique("report", {"day": 1}, delay=60, partition="eu")


def dedup(d: Dedup, *, holder: str | None = None) -> Call:
    """An enqueue with ``d``; ``holder``: "waiting" or "running" job holding the key first."""

    async def call(w: World) -> Any:
        if holder is not None:
            assert await w.enqueuer.enqueue("report", {"v": 0}, dedup=d) is not None
            if holder == "running":
                await w.fetched_by("p1", "report")
        return await w.enqueuer.enqueue("report", {"v": 1}, dedup=d)

    return call


async def promote(w: World) -> Any:
    for i in range(2):
        await w.enqueuer.enqueue("report", {"i": i}, delay=1, partition="eu" if i else None)
    return await w.scripts.promote(["report"], (await w.redis.time())[0] * 1000 + 60_000, 100)


async def reap(w: World) -> Any:
    for i in range(2):
        await w.enqueuer.enqueue("report", {"i": i})
    await w.fetched_by("dead", "report")
    await w.redis.zadd(w.keys.pools, {"dead": 1})  # its heartbeat stopped long ago
    members = [m.decode() for m in await w.redis.zrange(w.keys.in_progress("dead"), 0, -1)]
    rows = [(m, m.partition(":")[0], "report") for m in members]
    return await w.scripts.reap("dead", 60_000, 5, b'"lost"', b'"malformed"', rows)


def fire(mode: str, **options: Any) -> Call:
    """A schedule_fire call in ``mode`` (the schedule initialised at NOW, due a minute later)."""

    async def call(w: World) -> Any:
        periodic = make_periodic("@every 1m", "report", **options)
        await w.store.refresh([periodic], NOW, 60_000)
        if mode != "init":
            await w.store.fire(periodic, "init", slot_ms=NOW, next_ms=NOW + 60_000, now_ms=NOW)
        if options.get("skip_if_running") or options.get("dedup"):  # a run holds it
            run = {"slot_ms": NOW + 60_000, "next_ms": NOW + 120_000, "now_ms": NOW + 60_000}
            await w.store.fire(periodic, "fire", envelope=b"{}", job_id="earlier", **run)
        slot = NOW + (180_000 if options else 60_000)
        return await w.store.fire(
            periodic,
            mode,
            slot_ms=slot,
            next_ms=slot + 60_000,
            now_ms=slot,
            envelope=b'{"n":"report"}',
            job_id="" if mode == "init" else "call",
            pool_id="p1",
        )

    return call


def fire_checked(mode: str, *, ahead: bool) -> Call:
    """A schedule_fire call in ``mode`` checked against the Redis clock (1 s of tolerance):
    its slot a day ahead of it (refused: status ahead) or at it."""

    async def call(w: World) -> Any:
        periodic = make_periodic("@every 1m", "report")
        now = (await w.redis.time())[0] * 1000
        await w.store.refresh([periodic], now, 60_000)
        if mode != "init":
            await w.store.fire(periodic, "init", slot_ms=now - 60_000, next_ms=now, now_ms=now)
        slot = now + (86_400_000 if ahead else 0)
        return await w.store.fire(
            periodic, mode, slot_ms=slot, next_ms=slot + 60_000, now_ms=slot,
            envelope=b'{"n":"report"}', job_id="" if mode == "init" else "call", pool_id="p1",
            ahead_ms=1000,
        )  # fmt: skip

    return call


async def register(w: World) -> Any:
    return await w.store.refresh([make_periodic("@every 1m", "report")], NOW, 60_000)


def move(mode: str, source: str, *, expected: bytes = b"") -> Call:
    """A move of a job (``source``: where it is, "scheduled" or "queued") from the scheduled
    set in ``mode``; the ``expected`` envelope, when given, is not the stored one."""

    async def call(w: World) -> Any:
        job = await w.enqueuer.enqueue("report", {"v": 1}, delay=60 if source == "scheduled" else 0)
        assert job is not None
        due, new = NOW + 120_000, b'{"n":"report","a":{"v":2}}' if expected else b""
        return await w.scripts.move(
            job.id, "report", w.keys.scheduled("report"), mode, due, new, NOW, expected=expected
        )

    return call


async def wf_cancel_finishing(w: World) -> Any:
    """A cancel that ends the last open members of a run, held behind a failed root whose walk
    of its 250 dependents is left on the work list after the first 200: it finishes the run."""
    wf = Workflow("fan-out", id="run1")
    root = wf.add("work", {}, id="root")
    for i in range(250):
        wf.add("work", {}, id=f"c{i:03}", after=[root])
    run = await w.enqueuer.enqueue_workflow(wf)
    assert await w.scripts.cancel(run.job_id("root"), "work", NOW, 60_000) == "cancelled"
    held = [f"c{i:03}" for i in range(200, 250)]
    assert len(await w.redis.hkeys(w.keys.workflow(run.id, "env"))) == len(held)
    answer = await w.workflows.cancel(run.id, held)
    assert (await run.status()).status == "cancelled"
    return answer


async def deregister(w: World) -> Any:
    await w.scripts.heartbeat("p1", b"{}", 60_000, mode="register")
    return await w.scripts.deregister("p1", ["report"])


async def unique_gc(w: World) -> Any:
    assert await w.enqueuer.enqueue_unique("report", {"day": 1}) is not None
    [digest] = await w.redis.zrange(w.keys.unique_expiry, 0, -1)
    await w.redis.zadd(w.keys.unique_expiry, {digest: 1})  # its lock expired long ago
    return await w.scripts.unique_gc(NOW)


async def wf_trim(w: World) -> Any:
    """A run that finished (its only member cancelled), its linger over: its keys expired."""
    wf = Workflow("one", id="run3", linger=1)
    wf.add("work", {}, id="a")
    run = await w.enqueuer.enqueue_workflow(wf)
    assert await w.scripts.cancel(run.job_id("a"), "work", NOW, 60_000) == "cancelled"
    assert (await run.status()).done
    parts = ("open", "out", "nodes", "res")
    await w.redis.delete(w.keys.workflow(run.id), *(w.keys.workflow(run.id, p) for p in parts))
    return await w.workflows.trim((await w.redis.time())[0] * 1000 + 60_000)


def did_nothing(first: Any) -> Any:
    """deregister, unique_gc and wf_trim answer what this call did (their callers drop the
    answer: see each script's header): the work went with the first send."""
    return 0


def moved_nothing(first: Any) -> Any:
    """promote answers what this call moved: the jobs went with the first send."""
    return [0, first[1]]


def requeued_nothing(first: Any) -> Any:
    """reap answers what this call took back: the jobs went with the first send."""
    return [0, 0, first[2], 0, first[4]]


# (id, script, call, the first element of its answer, the answer of the re-send from the
# first's when it differs)
CASES: list[tuple[str, str, Call, Any, Callable[[Any], Any] | None]] = [
    ("unique-now", "enqueue_unique", unique_now, 1, None),
    ("unique-later-partitioned", "enqueue_unique", unique_later_partitioned, 1, None),
    ("dedup-enqueued", "enqueue_dedup", dedup(Dedup("k")), b"enqueued", None),
    ("dedup-dropped", "enqueue_dedup", dedup(Dedup("k"), holder="waiting"), b"dropped", None),
    ("dedup-throttle", "enqueue_dedup", dedup(Dedup("k", throttle=60)), b"enqueued", None),
    (
        "dedup-replaced",
        "enqueue_dedup",
        dedup(Dedup("k", debounce=True), holder="waiting"),
        b"replaced",
        None,
    ),
    (
        "dedup-rerun",
        "enqueue_dedup",
        dedup(Dedup("k", until="finished", rerun_latest=True), holder="running"),
        b"rerun_queued",
        None,
    ),
    ("promote", "promote", promote, 2, moved_nothing),
    ("reap", "reap", reap, 2, requeued_nothing),
    ("fire-init", "schedule_fire", fire("init"), b"initialized", None),
    ("fire", "schedule_fire", fire("fire"), b"fired", None),
    ("fire-missed", "schedule_fire", fire("missed"), b"missed", None),
    ("fire-advance", "schedule_fire", fire("advance"), b"advanced", None),
    ("fire-manual", "schedule_fire", fire("manual"), b"fired", None),
    ("fire-skipped", "schedule_fire", fire("fire", skip_if_running=True), b"skipped", None),
    ("fire-deduped", "schedule_fire", fire("fire", dedup=Dedup("k")), b"deduped", None),
    ("fire-init-ahead", "schedule_fire", fire_checked("init", ahead=True), b"ahead", None),
    ("fire-ahead", "schedule_fire", fire_checked("fire", ahead=True), b"ahead", None),
    ("fire-missed-ahead", "schedule_fire", fire_checked("missed", ahead=True), b"ahead", None),
    ("fire-checked", "schedule_fire", fire_checked("fire", ahead=False), b"fired", None),
    ("register", "schedule_register", register, 1, None),
    # (its re-send found the run finished, not running, and said 0)
    ("wf-cancel-finishing", "wf_cancel", wf_cancel_finishing, 1, None),
    ("deregister", "deregister", deregister, 1, did_nothing),
    ("unique-gc", "unique_gc", unique_gc, 1, did_nothing),
    ("wf-trim", "wf_trim", wf_trim, 1, did_nothing),
    ("move-queue", "move", move("queue", "scheduled"), 1, None),
    ("move-schedule", "move", move("schedule", "scheduled"), 1, None),
    ("move-delete", "move", move("delete", "scheduled"), 1, None),
    # the job is on its queue already: a re-send that guessed from where the job is said 1
    ("move-queue-nothing", "move", move("queue", "queued"), 0, None),
    ("move-schedule-nothing", "move", move("schedule", "queued"), 0, None),
    ("move-changed-envelope", "move", move("queue", "scheduled", expected=b"{}"), 0, None),
]


@pytest.mark.parametrize(
    ("script", "call", "status", "resent"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
async def test_a_resent_call_writes_nothing_and_answers_the_same(
    redis: Redis,
    namespace: str,
    script: str,
    call: Call,
    status: Any,
    resent: Callable[[Any], Any] | None,
) -> None:
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    enqueuer = Enqueuer(redis, namespace=namespace)
    enqueuer.scripts = scripts
    store, workflows = ScheduleStore(redis, keys), WorkflowScripts(redis, keys)
    w = World(redis, namespace, keys, scripts, store, enqueuer, workflows)
    rec = w.record(script)
    await call(w)
    first = rec.reply
    assert (first[0] if isinstance(first, list) else first) == status
    before = await snapshot(redis, namespace)
    answer = await rec.resend()
    assert answer == (resent(first) if resent else first)
    assert await snapshot(redis, namespace) == before
    await assert_invariants(redis, namespace)


async def test_a_workflow_cancel_resent_answers_as_the_first(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """WorkflowRun.cancel cancels the run's queued members through cancel.lua, each re-sent
    here: without a token of the call, the re-send said ``already``."""
    enqueuer = Enqueuer(redis, namespace=namespace, strict=None)
    wf = Workflow("two", id="run2")
    wf.add("work", {}, id="b", after=[wf.add("work", {}, id="a")])
    run = await enqueuer.enqueue_workflow(wf)
    answers: list[tuple[str, str]] = []
    once = Scripts.cancel

    async def twice(self: Scripts, *args: Any, **kwargs: Any) -> str:
        first = await once(self, *args, **kwargs)
        answers.append((first, await once(self, *args, **kwargs)))
        return first

    monkeypatch.setattr(Scripts, "cancel", twice)
    assert await run.cancel() is True
    assert answers == [("cancelled", "cancelled")]
    assert (await run.status()).status == "cancelled"
    await assert_invariants(redis, namespace)
