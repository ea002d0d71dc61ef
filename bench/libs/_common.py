"""What every bench/libs/<lib>_bench.py adapter shares (standard library only).

Each adapter runs as a script from bench/libs under its own library's python, so ``import
_common`` works in every venv. The adapter keeps what is library-specific: its job handlers
(whose signatures differ), how it connects, enqueues one job or a batch, and starts and stops
a worker. This module holds the rest of the protocol described in bench/README.md:

- the CLI (``enqueue`` / ``worker`` / ``version`` and their options) and ``main()``;
- the JSON lines on stdout (``{"version"}``, ``{"n", "seconds"}``, ``{"ready"}``, then
  ``{"n", "first_start", "last_done", "latencies_ms"}``; with ``worker --stream`` one
  ``{"t", "ms"}`` per stamp job instead, until the harness stops the worker);
- the job counters: first start, N-th finish, enqueue-to-start latency samples;
- the timed enqueue loop (warm-up, serial / paced / 32 in flight / bulk).
"""

import argparse
import asyncio
import collections
import json
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from importlib import metadata
from typing import Any
from urllib.parse import urlsplit

JOBS = ("noop", "sleep", "stamp", "io")
MODES = ("serial", "gather", "bulk", "paced")
SLEEP_S = 0.01  # the "10 ms jobs" workload

# ---------------------------------------------------------------- job counters
# The same few lines run inside every library's handlers, so they cost every library the same.

STATE: dict[str, Any] = {
    "n": 0,
    "done": 0,
    "first": None,
    "last": None,
    "lat": [],
    "cpu_first": None,  # process CPU time (user + system) at the first start and the N-th finish
    "cpu_last": None,
    "stream": False,  # worker --stream: one JSON line per stamp job, run until stopped
}
DONE = asyncio.Event()  # set when the N-th job finishes (binds to the running loop on first use)


def _started() -> None:
    if STATE["first"] is None:
        STATE["first"] = time.perf_counter()
        STATE["cpu_first"] = time.process_time()


def _finished() -> None:
    STATE["done"] += 1
    if STATE["done"] == STATE["n"]:
        STATE["last"] = time.perf_counter()
        STATE["cpu_last"] = time.process_time()
        DONE.set()


def noop_job() -> None:
    """Body of the no-op handler."""
    _started()
    _finished()


async def sleep_job() -> None:
    """Body of the 10 ms handler."""
    _started()
    await asyncio.sleep(SLEEP_S)
    _finished()


async def io_job() -> None:
    """Body of the I/O handler: one Redis round trip (``INCR``), as real jobs do I/O. The
    client is the same for every library: one pipelined connection of this module's own."""
    _started()
    await _IO.incr()
    _finished()


class _Pipelined:
    """A minimal RESP client for ``INCR``: one connection, commands pipelined, replies matched
    in order (standard library only, so every adapter's venv runs it)."""

    def __init__(self) -> None:
        self.url = ""
        self.ready: asyncio.Future[None] | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.waiting: collections.deque[asyncio.Future[int]] = collections.deque()

    async def incr(self) -> int:
        if self.ready is None:
            self.ready = asyncio.ensure_future(self._connect())
        await self.ready
        assert self.writer is not None
        reply: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.waiting.append(reply)
        self.writer.write(b"*2\r\n$4\r\nINCR\r\n$8\r\nbench:io\r\n")
        return await reply

    async def _connect(self) -> None:
        parts = urlsplit(self.url)
        reader, self.writer = await asyncio.open_connection(parts.hostname, parts.port or 6379)
        self._reading = asyncio.ensure_future(self._read(reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while line := await reader.readline():
            self.waiting.popleft().set_result(int(line[1:]))


_IO = _Pipelined()


def stamp_job(t: float) -> None:
    """Body of the latency handler: ``t`` is the ``time.time()`` taken at enqueue. With
    ``--stream`` the sample goes out at once as a line ``{"t": t, "ms": latency}`` (several
    workers share the latency workload; the harness counts the lines of all of them)."""
    ms = (time.time() - t) * 1000
    STATE["lat"].append(ms)
    if STATE["stream"]:
        emit(t=t, ms=ms)
    _started()
    _finished()


# Handlers for libraries that call a job with its one value as the only argument (streaq, taskiq).


async def _plain_noop(i: int) -> None:
    noop_job()


async def _plain_sleep(i: int) -> None:
    await sleep_job()


async def _plain_stamp(t: float) -> None:
    stamp_job(t)


async def _plain_io(i: int) -> None:
    await io_job()


PLAIN_HANDLERS: dict[str, Callable[..., Coroutine[Any, Any, None]]] = {
    "noop": _plain_noop,
    "sleep": _plain_sleep,
    "stamp": _plain_stamp,
    "io": _plain_io,
}


def job_value(kind: str, i: int) -> float:
    """The one argument a job carries: the enqueue wall time for ``stamp``, else its index."""
    return time.time() if kind == "stamp" else i


def job_kwargs(kind: str, i: int) -> dict[str, float]:
    """The same, as keyword arguments: ``{"t": time}`` or ``{"i": i}``."""
    return {"t": time.time()} if kind == "stamp" else {"i": i}


# ---------------------------------------------------------------- JSON lines


def emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def emit_ready() -> None:
    """The worker is started: the harness may begin its clock-sensitive part."""
    emit(ready=True)


async def wait_done() -> None:
    """Wait for the N-th job to finish, then print the worker's result line; with ``--stream``
    wait until the harness stops the process (each sample was printed when it was taken)."""
    if STATE["stream"]:
        await asyncio.Event().wait()
    await DONE.wait()
    emit(
        n=STATE["n"],
        first_start=STATE["first"],
        last_done=STATE["last"],
        cpu_s=STATE["cpu_last"] - STATE["cpu_first"],
        latencies_ms=STATE["lat"],
    )


def dist_version(*names: str, default: str | None = None) -> str:
    """Installed version of the first distribution; more names are appended as `` + name v``."""
    try:
        out = metadata.version(names[0])
    except metadata.PackageNotFoundError:
        if default is None:
            raise
        out = default
    return " + ".join([out, *(f"{n} {metadata.version(n)}" for n in names[1:])])


# ---------------------------------------------------------------- enqueue loop

One = Callable[[int], Awaitable[Any]]  # enqueue job i
Many = Callable[[range], Awaitable[Any]]  # enqueue jobs i in the range, one library call


async def timed_enqueue(a: argparse.Namespace, one: One, many: Many | None = None) -> float:
    """Enqueue ``a.warmup`` untimed jobs, then ``a.n`` jobs in ``a.mode``; seconds for the N.

    ``serial``: one await per job; ``paced``: the same with ``a.pause`` between jobs (the
    latency workload); ``gather``: windows of ``a.window`` in flight; ``bulk``: ``many`` over
    ranges of ``a.batch`` (SystemExit when the library has no bulk API).
    """
    if a.mode == "bulk" and many is None:
        raise SystemExit("this library has no bulk enqueue")
    for i in range(a.warmup):
        await one(i)
    t0 = time.perf_counter()
    if a.mode in ("serial", "paced"):
        for i in range(a.n):
            await one(i)
            if a.mode == "paced":
                await asyncio.sleep(a.pause)
    elif a.mode == "gather":
        for s in range(0, a.n, a.window):
            await asyncio.gather(*(one(i) for i in range(s, min(s + a.window, a.n))))
    else:
        assert many is not None
        for s in range(0, a.n, a.batch):
            await many(range(s, min(s + a.batch, a.n)))
    return time.perf_counter() - t0


def emit_enqueued(a: argparse.Namespace, seconds: float) -> None:
    emit(n=a.n, seconds=seconds)


# ---------------------------------------------------------------- CLI


def redis_url(value: str) -> str:
    """``--url``: the harness's private server; reject what is not a redis:// URL with a host."""
    parts = urlsplit(value)
    if parts.scheme not in ("redis", "rediss", "unix") or not (parts.hostname or parts.path):
        raise argparse.ArgumentTypeError(f"not a Redis URL: {value!r}")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    p.add_argument("cmd", choices=["enqueue", "worker", "version"])
    p.add_argument("--url", type=redis_url, required=True)  # the harness's private server
    p.add_argument("--queue", default="bench")
    p.add_argument("--job", choices=JOBS, default="noop")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--mode", choices=MODES, default="serial")
    p.add_argument("--window", type=int, default=32)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--pause", type=float, default=0.005)
    p.add_argument("--warmup", type=int, default=0)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--stream", action="store_true", help="worker: print each stamp, run on")
    return p


Run = Callable[[argparse.Namespace], Coroutine[Any, Any, None]]


def main(
    enqueue: Run,
    worker: Run,
    loop_run: Callable[[Coroutine[Any, Any, None]], Any],
    *,
    version: Callable[[], str],
    options: Iterable[tuple[tuple[str, ...], dict[str, Any]]] = (),
) -> None:
    """Parse the command line and run one command.

    ``enqueue(a)`` and ``worker(a)`` are the adapter's coroutines, run with ``loop_run``
    (``uvloop.run``); ``options`` are extra ``add_argument`` calls for library settings.
    """
    p = parser()
    for args, kwargs in options:
        p.add_argument(*args, **kwargs)
    a = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if a.cmd == "version":
        emit(version=version())
        return
    STATE["n"] = a.n
    STATE["stream"] = a.stream
    _IO.url = a.url
    loop_run(enqueue(a) if a.cmd == "enqueue" else worker(a))
