"""The life of a SyncEnqueuer's (or SyncClient's) loop thread and connections, beyond close():
one dropped without close() (made per request, per task), and a child forked by a server that
skips Python's fork hooks (uWSGI's default preforking: its master never runs them)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from typing import Any

import orjson
import pytest
import redis

from errands import RedisUnavailableError, SyncClient, SyncEnqueuer
from errands.store.keys import Keys
from tests.support.procs import subprocess_env


def portal_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("errands-sync-")]


def clients(admin: redis.Redis) -> int:
    return int(admin.info("clients")["connected_clients"])


def use(kind: str, url: str, namespace: str) -> None:
    """One call through a new SyncEnqueuer or SyncClient, then dropped without close()."""
    if kind == "enqueuer":
        assert SyncEnqueuer(url, namespace=namespace, strict=None).enqueue("x") is not None
    else:
        assert SyncClient(url, namespace=namespace).job("nope") is None


@pytest.mark.parametrize("kind", ["enqueuer", "client"])
def test_one_dropped_without_close_stops_its_thread_and_closes_its_connections(
    kind: str, own_url: str, namespace: str
) -> None:
    """Each one made and dropped without close() (a SyncEnqueuer per request) left its loop
    thread running for the life of the process, with its event loop (an epoll and a socket
    pair) and its connections open (collected from another thread: "unclosed Connection"):
    30 of them, 30 threads and 121 file descriptors more (found by this hunt)."""
    admin = redis.Redis.from_url(own_url)
    try:
        threads_before, clients_before = len(portal_threads()), clients(admin)
        for _ in range(5):
            use(kind, own_url, namespace)
        # (no gc.collect(): nothing holds a dropped one, it goes at once)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (
            len(portal_threads()) > threads_before or clients(admin) > clients_before
        ):
            time.sleep(0.01)
        assert len(portal_threads()) == threads_before, portal_threads()
        assert clients(admin) == clients_before
    finally:
        admin.close()


RAW_FORK = """
import ctypes, os, signal, sys

from errands import SyncEnqueuer

enqueuer = SyncEnqueuer(sys.argv[1], namespace=sys.argv[2], strict=None)
enqueuer.enqueue("in_parent")  # the loop thread started before the fork (a warm-up, an import)
# fork() as a C server forks (uWSGI's master): no PyOS_BeforeFork/AfterFork, so none of the
# os.register_at_fork hooks runs in the child (PyDLL: the GIL kept across the call)
pid = ctypes.PyDLL(None).fork()
if pid == 0:
    signal.signal(signal.SIGALRM, lambda *a: (print("child hung", flush=True), os._exit(3)))
    signal.alarm(10)
    try:
        print("child", enqueuer.enqueue("in_child").id, flush=True)
    except BaseException as exc:
        print("child", repr(exc), flush=True)
    os._exit(0)
os.waitpid(pid, 0)
print("parent", enqueuer.enqueue("in_parent_after").id, flush=True)
"""


def test_a_child_forked_without_pythons_fork_hooks_enqueues_on_connections_of_its_own(
    redis_url: str, namespace: str
) -> None:
    """uWSGI forks its workers without running Python's fork hooks (unless
    ``py-call-osafterfork``): a worker's enqueue through the SyncEnqueuer its master had used
    waited for ever, on the loop of a thread that does not exist in the child (found by this
    hunt). The child notices by its pid, as redis-py's pools do, and starts anew. Nor did the
    child forget the random job ids its parent had drawn ahead (building.random_id): once it
    stopped hanging, its first enqueue and its parent's next one drew the same id, and the
    second was acknowledged but not stored (the other's job held the id)."""
    proc = subprocess.run(
        [sys.executable, "-c", RAW_FORK, redis_url, namespace],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines())
    assert set(lines) == {"child", "parent"}, proc.stdout
    admin: Any = redis.Redis.from_url(redis_url)
    try:
        stored = {name: admin.hget(Keys(namespace).jobs, lines[who]) for who, name in
                  [("child", "in_child"), ("parent", "in_parent_after")]}  # fmt: skip
        names = sorted(admin.smembers(Keys(namespace).names))
    finally:
        admin.close()
    for name, envelope in stored.items():
        assert envelope is not None and orjson.loads(envelope)["n"] == name, stored
    assert names == [b"in_child", b"in_parent", b"in_parent_after"]


DROP_IN_RAW_CHILD = """
import asyncio, ctypes, gc, os, sys, time

from errands import SyncEnqueuer

held = [SyncEnqueuer(sys.argv[1], namespace=sys.argv[2], strict=None)]
held[0].enqueue("in_parent")
pid = ctypes.PyDLL(None).fork()  # (as RAW_FORK: no fork hooks in the child)
if pid == 0:
    async def main() -> None:  # the child's own asyncio code drops it before any sync call
        held.clear()
        gc.collect()
    asyncio.run(main())
    os._exit(0)
os.waitpid(pid, 0)
start = time.monotonic()
held[0].enqueue("in_parent_after")
print(time.monotonic() - start)
"""


def test_a_child_forked_without_hooks_that_drops_its_parents_one_leaves_the_parent_alone(
    redis_url: str, namespace: str
) -> None:
    """A hook-less child (uWSGI's worker) that dropped the SyncEnqueuer its master had used
    before making a sync call (so before noticing its fork), while a loop of its own ran: the
    parent's connections were collected in the child and closed themselves on the parent's
    loop object, taking their sockets out of the epoll instance parent and child share. The
    parent's next enqueue then heard no reply and waited its socket timeout (found in review:
    2.0 s with socket_timeout=2). The portal keeps them in the child, as it does on noticing."""
    url = redis_url + ("&" if "?" in redis_url else "?") + "socket_timeout=5"
    proc = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", DROP_IN_RAW_CHILD, url, namespace],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert float(proc.stdout) < 2.5  # (not a socket timeout: its reply heard at once)


def test_a_request_meets_a_hung_redis_with_a_clear_error_in_bounded_time(
    own_url: str, namespace: str
) -> None:
    """Redis accepting connections but not answering (CLIENT PAUSE: a stalled server): the
    enqueue raises RedisUnavailableError naming the server after about five socket timeouts
    (the held connection's try, then the pool's three retries), never hangs; once Redis
    answers again, the next call works at once. (Holds: found so in the sync hunt.)"""
    admin = redis.Redis.from_url(own_url)
    sync = SyncEnqueuer(own_url + "?socket_timeout=0.3", namespace=namespace, strict=None)
    try:
        assert sync.enqueue("warm") is not None
        admin.execute_command("CLIENT", "PAUSE", "20000", "WRITE")
        start = time.monotonic()
        with pytest.raises(RedisUnavailableError, match="cannot reach Redis at redis://"):
            sync.enqueue("stalled")
        took = time.monotonic() - start
        admin.execute_command("CLIENT", "UNPAUSE")
        assert 5 * 0.3 <= took < 5 * 0.3 + 2.5, took  # (and the retries' backoff, ~0.7 s)
        start = time.monotonic()
        assert sync.enqueue("after") is not None
        assert time.monotonic() - start < 2
    finally:
        admin.execute_command("CLIENT", "UNPAUSE")
        admin.close()
        sync.close()
