"""The pinned script connection (store/pinned.py): calls written on one connection, their
replies read by errands in the order sent; errors, cancellations and timeouts."""

from __future__ import annotations

import asyncio
import os
import time
import warnings
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import hiredis
import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    NoScriptError,
    ReadOnlyError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from errands import Enqueuer
from errands.store import foreign, pinned
from errands.store.bulk import pack_evalsha
from errands.store.keys import Keys
from errands.store.pinned import PinnedScript, _Link
from tests.faults.proxy import FaultProxy

ECHO = "return ARGV[1]"


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
async def client(redis_url: str, request: pytest.FixtureRequest) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url, protocol=request.param, socket_timeout=15)
    yield client
    await client.aclose()


async def test_calls_in_flight_together_each_get_their_own_reply(client: Redis) -> None:
    script = PinnedScript(client, await client.script_load(ECHO))
    replies = await asyncio.gather(*(script(["k"], [f"v{i}"]) for i in range(300)))
    assert replies == [f"v{i}".encode() for i in range(300)]
    assert isinstance(script._link, _Link)  # errands read them (not redis-py)
    await script.aclose()


async def test_a_cancelled_call_leaves_the_connection_in_step(client: Redis) -> None:
    script = PinnedScript(client, await client.script_load(ECHO))
    await script(["k"], ["warm"])
    conn = script._conn
    first = asyncio.ensure_future(script(["k"], ["first"]))
    await asyncio.sleep(0)  # written, its reply not read yet
    first.cancel()
    assert await script(["k"], ["second"]) == b"second"  # not the cancelled call's reply
    assert first.cancelled()
    assert script._conn is conn  # the connection was kept
    await script.aclose()


async def test_an_error_reply_reaches_its_caller_only(client: Redis) -> None:
    script = PinnedScript(client, await client.script_load("return redis.error_reply(ARGV[1])"))
    outcomes = await asyncio.gather(
        *(script(["k"], [f"ERR boom {i}"]) for i in range(3)), return_exceptions=True
    )
    assert [str(o) for o in outcomes] == [f"boom {i}" for i in range(3)]
    assert all(isinstance(o, ResponseError) for o in outcomes)
    conn = script._conn
    missing = PinnedScript(client, "0" * 40)
    with pytest.raises(NoScriptError):
        await missing(["k"], ["x"])
    await missing.aclose()
    assert script._conn is conn
    await script.aclose()


async def test_a_late_reply_breaks_the_link_and_the_next_call_connects_anew(
    redis_url: str,
) -> None:
    with FaultProxy(urlsplit(redis_url).port or 6379) as proxy:
        client = Redis.from_url(proxy.url, socket_timeout=1.0)  # (generous: a loaded machine)
        try:
            script = PinnedScript(client, await client.script_load(ECHO))
            assert await script(["k"], ["before"]) == b"before"
            proxy.blackhole(replies_only=True)  # this connection: requests pass, replies never
            calls = [asyncio.ensure_future(script(["k"], [f"held {i}"])) for i in range(3)]
            outcomes = await asyncio.gather(*calls, return_exceptions=True)
            assert all(isinstance(o, RedisTimeoutError) for o in outcomes), outcomes
            assert script._conn is None  # given up
            assert await script(["k"], ["after"]) == b"after"
            await script.aclose()
        finally:
            await client.aclose()


async def test_enqueue_outlives_a_reply_lost_on_the_pinned_connection(
    redis_url: str, namespace: str
) -> None:
    """The reply never comes: the enqueue falls back to the general path, which re-sends the
    job; the job is stored once and its caller is not told it existed."""
    with FaultProxy(urlsplit(redis_url).port or 6379) as proxy:
        client = Redis.from_url(proxy.url, socket_timeout=1.0)  # (generous: a loaded machine)
        try:
            async with Enqueuer(client, namespace=namespace, strict=None) as enqueuer:
                await enqueuer.enqueue("a", {"i": 0})
                proxy.blackhole(replies_only=True)  # open connections: requests pass, no reply
                job = await enqueuer.enqueue("a", {"i": 1}, job_id="lost-reply")
                assert job is not None and not job.existed
        finally:
            await client.aclose()
    check = Redis.from_url(redis_url)
    assert await check.zcard(Keys(namespace).queue("a")) == 2
    await check.aclose()


async def test_closing_the_client_under_a_held_connection_does_not_hang(
    redis_url: str, namespace: str
) -> None:
    """The client is closed while an Enqueuer still holds its pinned connection (it was never
    closed itself): redis-py's disconnect waits for the connection's end, which must reach it
    (it waited 5 s and raised TimeoutError when it did not)."""
    client = Redis.from_url(redis_url)
    enqueuer = Enqueuer(client, namespace=namespace, strict=None)
    await enqueuer.enqueue("a", {})
    assert isinstance(enqueuer._pinned.script._link if enqueuer._pinned else None, _Link)
    await asyncio.wait_for(client.aclose(), timeout=2)


async def test_calls_made_before_the_first_connects_share_one_connection(
    redis: Redis, redis_url: str
) -> None:
    client = Redis.from_url(redis_url)  # no connection yet: the first call has to connect
    script = PinnedScript(client, await redis.script_load(ECHO))
    await asyncio.gather(*(script(["k"], [f"v{i}"]) for i in range(20)))
    assert len(client.connection_pool._in_use_connections) == 1
    await script.aclose()
    await client.aclose()


def test_the_command_is_packed_as_the_python_packer_packs_it(
    redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = PinnedScript(redis, "a" * 40)
    keys, args = ["k1", "ké"], ["x", b"\x00bytes", 7, -1, 0.25, "ünï"]
    sent: list[bytes] = []
    monkeypatch.setattr(script, "send", sent.append)
    script(keys, args)
    assert sent == [pack_evalsha("a" * 40, keys, args)]


async def test_a_resp3_push_between_replies_is_passed_over(
    redis: Redis, redis_url: str, namespace: str
) -> None:
    key = f"{namespace}:pinned-push"  # (a key of the test's own on the shared server)
    client = Redis.from_url(redis_url, protocol=3)
    script = PinnedScript(client, await redis.script_load("return redis.call('GET', KEYS[1])"))
    await redis.set(key, "one")
    assert await script([key], []) == b"one"
    link = script._link
    assert link is not None
    assert await link.call(hiredis.pack_command((b"CLIENT", b"TRACKING", b"ON"))) == b"OK"
    assert await script([key], []) == b"one"  # the key is tracked from now on
    await redis.set(key, "two")  # the server pushes an invalidation to the link
    for _ in range(3):
        assert await script([key], []) == b"two"
    assert script._link is link and link.broken is None
    await script.aclose()
    await client.aclose()


async def test_a_connection_to_a_demoted_master_is_given_up(
    own_redis: Redis, namespace: str
) -> None:
    """The server turns replica (a master demoted by hand or by a failover that keeps its
    clients): the enqueue on the held connection answers READONLY, reaches its caller, and the
    held connection goes (the next call takes one from the pool, where a Sentinel-managed pool
    finds the new master) instead of being kept and refused for good."""
    enqueuer = Enqueuer(own_redis, namespace=namespace)
    try:
        await enqueuer.enqueue("a", {}, job_id="before")
        assert enqueuer._pinned is not None
        held = enqueuer._pinned.script
        old = held._conn
        assert old is not None
        await own_redis.execute_command("REPLICAOF", "127.0.0.1", "1")  # (no master there)
        try:
            with pytest.raises(ReadOnlyError):
                await enqueuer.enqueue("a", {}, job_id="refused")
            assert held._conn is not old
        finally:
            await own_redis.execute_command("REPLICAOF", "NO", "ONE")
        await enqueuer.enqueue("a", {}, job_id="after")
        assert await own_redis.hexists(Keys(namespace).jobs, "after")
        assert not await own_redis.hexists(Keys(namespace).jobs, "refused")
    finally:
        await enqueuer.aclose()


@pytest.mark.parametrize("reads", ["errands", "redis-py"])
async def test_a_script_error_quoting_readonly_gives_the_connection_up_as_readonly(
    client: Redis, monkeypatch: pytest.MonkeyPatch, reads: str
) -> None:
    """Redis < 7 reports a write a replica refused inside a script as a script error quoting
    READONLY, not as READONLY: it is the same failover (the held connection goes, the caller
    sees ReadOnlyError and takes the general way), not a bug of the script kept for good."""
    if reads == "redis-py":
        monkeypatch.setattr(pinned, "_take_over", lambda conn: None)
    reply = (
        "ERR Error running script (call to f_0123): @user_script:1: @user_script: 1: "
        "-READONLY You can't write against a read only replica. "
    )
    script = PinnedScript(client, await client.script_load(f'return redis.error_reply("{reply}")'))
    with pytest.raises(ReadOnlyError, match="Error running script"):
        await script([], [])
    assert script._conn is None  # given up
    with pytest.raises(ReadOnlyError):
        await script([], [])  # (a new connection: the same answer here)
    other = PinnedScript(client, await client.script_load("return redis.error_reply('ERR x')"))
    with pytest.raises(ResponseError) as raised:
        await other([], [])
    assert type(raised.value) is ResponseError and other._conn is not None  # kept
    await script.aclose()
    await other.aclose()


@pytest.mark.parametrize(
    "reply, error",
    [
        ("LOADING Redis is loading the dataset in memory", BusyLoadingError),
        ("NOAUTH Authentication required.", AuthenticationError),
    ],
)
async def test_an_error_reply_of_a_connection_error_class_is_raised(
    client: Redis, reply: str, error: type[Exception]
) -> None:
    """Error replies redis-py maps to ConnectionError classes (a server loading its data after
    a restart, a lost AUTH) are raised like every error reply, not returned as the value (the
    callers then fall back to the general path, which retries)."""
    script = PinnedScript(client, await client.script_load(f"return redis.error_reply('{reply}')"))
    with pytest.raises(error):
        await script([], [])
    await script.aclose()


async def test_calls_take_turns_when_redis_py_reads_the_replies(
    client: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """redis-py reads the replies (RESP3 with a hiredis older than 3.2, or no hiredis): calls
    made together (the worker's fetch loop and its batch loops share the held fetch) wait for
    each other; they raised RuntimeError (a second read while one waits) and the connection
    was given up under the first."""
    monkeypatch.setattr(pinned, "_take_over", lambda conn: None)
    script = PinnedScript(client, await client.script_load(ECHO))
    assert await script(["k"], ["warm"]) == b"warm"
    conn = script._conn
    assert conn is not None and script._link is None
    replies = await asyncio.gather(*(script(["k"], [f"v{i}"]) for i in range(50)))
    assert replies == [f"v{i}".encode() for i in range(50)]
    waiting = [asyncio.ensure_future(script(["k"], [f"w{i}"])) for i in range(3)]
    await asyncio.sleep(0)  # the first sent, the others waiting their turn
    waiting[1].cancel()  # (nothing sent: the connection stays)
    assert [await waiting[0], await waiting[2]] == [b"w0", b"w2"]
    assert script._conn is conn
    await script.aclose()


async def test_closing_while_the_connection_is_made_gives_it_back(
    redis: Redis, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aclose while the held connection is being made (a worker closed after a lost lease
    while its fetch reconnected): the connection is not taken after aclose and kept out of the
    pool for good; the calls waiting for it fall back (ConnectionError)."""
    client = Redis.from_url(redis_url)
    pool = client.connection_pool
    gate = asyncio.Event()
    take = pool.get_connection

    async def slow_connect() -> Any:
        await gate.wait()  # (Redis coming back, a TLS handshake...)
        return await take()

    monkeypatch.setattr(pool, "get_connection", slow_connect)
    script = PinnedScript(client, await redis.script_load(ECHO))
    cancelled = asyncio.ensure_future(script(["k"], ["x"]))
    waiting = asyncio.ensure_future(script(["k"], ["y"]))
    await asyncio.sleep(0)
    connecting = script._connecting
    assert connecting is not None
    cancelled.cancel()  # (the fetch loop cancelled: the connect goes on)
    await asyncio.wait([cancelled])
    await script.aclose()
    gate.set()
    await asyncio.wait([connecting, waiting])
    assert script._conn is None
    assert not pool._in_use_connections  # type: ignore[attr-defined]
    with pytest.raises(RedisConnectionError):
        waiting.result()
    assert await script(["k"], ["after"]) == b"after"  # (and it connects again on use)
    await script.aclose()
    await client.aclose()


async def test_a_forked_child_never_writes_on_its_parent_s_held_connection(
    redis: Redis, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fork (``os.register_at_fork`` runs ``foreign._after_fork`` in the child: it counts one
    fork more, as here) makes the next call take a connection of its own: the held one is the
    parent's socket."""
    client = Redis.from_url(redis_url)
    script = PinnedScript(client, await redis.script_load(ECHO))
    assert await script(["k"], ["a"]) == b"a"
    parents = _ports([script._conn])
    monkeypatch.setattr(foreign, "_forks", foreign.forks() + 1)  # (restored after the test)
    assert await script(["k"], ["b"]) == b"b"
    assert _ports([script._conn]).isdisjoint(parents)  # a socket of its own
    _, writer = foreign._parents.pop()  # (in a real child: forgotten, never closed)
    writer.close()
    await script.aclose()
    await client.aclose()


def test_a_real_fork_runs_the_hook_in_the_child() -> None:
    """The at-fork hook is registered: a forked child counts one fork more than its parent (the
    test above calls the hook by hand; this one forks)."""
    before = foreign.forks()
    read, write = os.pipe()
    with warnings.catch_warnings():  # (Python 3.12+ warns of a fork beside other threads)
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: its count, then out (no test machinery runs here)
        try:
            os.write(write, str(foreign.forks()).encode())
        finally:
            os._exit(0)
    os.close(write)
    child = int(os.read(read, 32).decode())
    os.close(read)
    os.waitpid(pid, 0)
    assert child == before + 1
    assert foreign.forks() == before


async def _close_across_loops(enqueuer: Enqueuer, client: Redis) -> None:
    """Close ``client``, some of its pool's connections opened on loops since closed."""
    await enqueuer.aclose()
    pool: Any = client.connection_pool
    for conn in [*pool._available_connections, *pool._in_use_connections]:
        if foreign.loop_of(conn) not in (None, asyncio.get_running_loop()):
            foreign.let_go(conn, own=True)
    await client.aclose()


def test_one_enqueuer_under_a_new_event_loop_per_call(redis_url: str, namespace: str) -> None:
    """asyncio.run per call (store/coalescer.py allows it): the pinned connection took over a
    pooled connection of a closed loop, its reply never read (each enqueue waited for the
    socket timeout), and each loop left one more connection open on the server."""
    admin = SyncRedis.from_url(redis_url)
    client = Redis.from_url(redis_url, socket_timeout=2)  # (fails in seconds without the fix)
    enqueuer = Enqueuer(client, namespace=namespace, strict=None)
    took, clients = [], []

    async def enqueue(i: int, last: bool) -> None:
        assert await enqueuer.enqueue("a", {"i": i}) is not None
        if last:
            await _close_across_loops(enqueuer, client)

    for i in range(4):
        start = time.monotonic()
        asyncio.run(enqueue(i, last=i == 3))
        took.append(time.monotonic() - start)
        clients.append(len(admin.client_list()))
    assert max(took) < 1, took
    assert clients[1:3] == clients[:1] * 2, clients  # (the last loop closed its client)
    assert admin.zcard(Keys(namespace).queue("a")) == 4
    admin.close()


def _ports(conns: Any) -> set[int]:
    return {c._writer.get_extra_info("sockname")[1] for c in conns if c._writer is not None}


def test_a_forked_child_takes_no_pooled_socket_of_its_parent(
    redis_url: str, namespace: str
) -> None:
    """The parent's idle pooled connections (made before the fork) were taken over by the
    child's pinned connection: the child wrote on its parent's socket, its reply read by no
    loop (the socket timeout waited). Now the child connects anew and leaves them open."""
    admin = SyncRedis.from_url(redis_url)
    client = Redis.from_url(redis_url, socket_timeout=2)  # (fails in seconds without the fix)
    enqueuer = Enqueuer(client, namespace=namespace, strict=None)

    async def before_the_fork() -> set[int]:
        assert await enqueuer.enqueue("a", {"i": 0}) is not None
        await asyncio.gather(
            client.set(f"{namespace}:k", "parent"), client.ping()
        )  # idle in the pool
        return _ports(client.connection_pool._available_connections)  # type: ignore[attr-defined]

    parents = asyncio.run(before_the_fork())
    assert parents
    read, write = os.pipe()
    with warnings.catch_warnings():  # (Python 3.12+ warns of a fork beside other threads)
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: how long its enqueue took, on whose socket; then out

        async def child() -> str:
            start = time.monotonic()
            await asyncio.wait_for(enqueuer.enqueue("a", {"i": 1}, job_id="child"), 10)
            assert enqueuer._pinned is not None
            port = _ports([enqueuer._pinned.script._conn]).pop()
            return f"{time.monotonic() - start:.3f} {port in parents}"

        try:
            os.write(write, asyncio.run(child()).encode())
        except BaseException as exc:
            os.write(write, repr(exc).encode()[:200])
        finally:
            os._exit(0)
    os.close(write)
    told = os.read(read, 200).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert told.count(" ") == 1, told
    took, on_parents = told.split()
    assert float(took) < 1 and on_parents == "False", told
    clients = {int(c["addr"].rsplit(":", 1)[1]) for c in admin.client_list()}
    assert parents <= clients  # the parent's sockets left open by the child
    assert admin.hexists(Keys(namespace).jobs, "child")
    admin.close()
    asyncio.run(_close_across_loops(enqueuer, client))


def test_a_process_that_never_forked_closes_the_sockets_of_its_other_loops(
    redis_url: str, namespace: str
) -> None:
    """A pooled connection opened on a loop where only redis-py's general path ran (no held
    connection there) was taken for a parent's socket and kept open for good: one more server
    connection each loop. A process that never forked owns every socket: each is closed."""
    from errands.store import foreign

    admin = SyncRedis.from_url(redis_url)
    before, counts = len(admin.client_list()), []
    for i in range(4):
        client = Redis.from_url(redis_url)
        enqueuer = Enqueuer(client, namespace=namespace, strict=None)
        asyncio.run(client.ping())  # the general path only, on a loop of its own

        asyncio.run(_enqueue_and_close(enqueuer, client, i))
        counts.append(len(admin.client_list()) - before)
    assert counts == [0, 0, 0, 0] and not foreign._parents, (counts, len(foreign._parents))
    admin.close()


async def _enqueue_and_close(enqueuer: Enqueuer, client: Redis, i: int) -> None:
    assert await enqueuer.enqueue("a", {"i": i}) is not None
    await _close_across_loops(enqueuer, client)
