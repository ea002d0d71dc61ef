#!/usr/bin/env python3
"""One await per job: errands' ``Enqueuer.enqueue`` against a bare redis-py ``EVALSHA`` of the
same script in the same process (uvloop, a private redis-server), alternating runs.

- ``errands``: ``await enqueuer.enqueue("noop", {"i": i})``, N times, one at a time;
- ``evalsha``: ``await redis.evalsha(sha, ...)`` of errands' own enqueue script with the
  request built once beforehand (only the job id and its result key change per call): the
  same work on the server, the least a client can do per job (redis-py's generic path);
- ``evalsha-return1``: ``EVALSHA`` of ``return 1`` with as many keys and arguments: a round
  trip with the argument traffic and no script work (the floor of any script call);
- ``socket``: the very bytes errands sends for each job (``one_job_command``, the job built and
  encoded as errands does), written on a bare asyncio protocol that resolves one future per
  reply: errands' command with no client around it, the floor of errands' one-await path (what
  is left is the round trip and the script's work in Redis);
- ``ping``: ``PING`` on the same bare protocol: the round trip alone, this machine's floor.

Each measurement is N jobs after 50 warm-up calls, on a fresh connection, FLUSHALL before it;
the modes alternate ``--runs`` times and the median is printed, with errands' share of each.

    PYTHONPATH=src .venv/bin/python bench/enqueue_vs_evalsha.py [--n 5000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

import uvloop
from redis.asyncio import Redis

from errands import Enqueuer
from errands.building import plain_job, random_id
from errands.store.bulk import one_job_command

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import PrivateRedis


async def errands_mode(url: str, n: int) -> float:
    enqueuer = Enqueuer.from_url(url, namespace="bench", strict=None)
    try:
        for i in range(50):
            await enqueuer.enqueue("noop", {"i": i})
        t0 = time.perf_counter()
        for i in range(n):
            await enqueuer.enqueue("noop", {"i": i})
        return time.perf_counter() - t0
    finally:
        await enqueuer.aclose()


async def evalsha_mode(url: str, n: int, trivial: bool) -> float:
    enqueuer = Enqueuer.from_url(url, namespace="bench", strict=None)
    redis: Redis = Redis.from_url(url)
    try:
        await enqueuer.enqueue("noop", {"i": 0})  # loads the script
        job = enqueuer._build("noop", {"i": 0})
        row = enqueuer._row(1, job)
        keys, args = enqueuer.scripts.enqueue_request(["noop"], [row])
        sha = enqueuer.scripts.sha("enqueue")
        if trivial:
            sha = await redis.script_load("return 1")
        id_at = args.index(job.id)

        async def one() -> object:
            job_id = uuid.uuid4().hex
            keys[-1] = enqueuer.keys.done(job_id)
            args[id_at] = job_id
            return await redis.evalsha(sha, len(keys), *keys, *args)

        for _ in range(50):
            await one()
        t0 = time.perf_counter()
        for _ in range(n):
            await one()
        return time.perf_counter() - t0
    finally:
        await redis.aclose()
        await enqueuer.aclose()


class _Replies(asyncio.Protocol):
    """One future per command written, resolved by the next bytes read (each reply here fits
    one read: ``*0``, ``+PONG``)."""

    def __init__(self) -> None:
        self.future: asyncio.Future[bytes] | None = None

    def data_received(self, data: bytes) -> None:
        if self.future is not None and not self.future.done():
            self.future.set_result(data)


async def socket_mode(url: str, n: int, ping: bool) -> float:
    enqueuer = Enqueuer.from_url(url, namespace="bench", strict=None)
    loop = asyncio.get_running_loop()
    host, port = url.split("//")[1].split("/")[0].split(":")
    transport, replies = await loop.create_connection(_Replies, host, int(port))
    try:
        await enqueuer.enqueue("noop", {"i": 0})  # loads the script
        sha = enqueuer.scripts.sha("enqueue").encode()
        heads: dict[str, tuple[bytes, bytes, bytes]] = {}
        names: set[str] = set()

        def command(i: int) -> bytes:
            if ping:
                return b"*1\r\n$4\r\nPING\r\n"
            job = plain_job("noop", {"i": i}, enqueuer.clock.now(), random_id(), names)
            envelope = enqueuer._encode(job)
            return one_job_command(enqueuer.keys, sha, heads, "noop", job.id, envelope, "1")

        async def one(i: int) -> bytes:
            replies.future = loop.create_future()
            transport.write(command(i))
            return await replies.future

        for i in range(50):
            await one(i)
        t0 = time.perf_counter()
        for i in range(n):
            await one(i)
        return time.perf_counter() - t0
    finally:
        transport.close()
        await enqueuer.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    opts = parser.parse_args()
    modes = {
        "errands": lambda url: errands_mode(url, opts.n),
        "evalsha": lambda url: evalsha_mode(url, opts.n, trivial=False),
        "evalsha-return1": lambda url: evalsha_mode(url, opts.n, trivial=True),
        "socket": lambda url: socket_mode(url, opts.n, ping=False),
        "ping": lambda url: socket_mode(url, opts.n, ping=True),
    }
    rates: dict[str, list[float]] = {m: [] for m in modes}
    load = os.getloadavg()[0]
    with PrivateRedis() as redis:
        for _ in range(opts.runs):
            for mode, run in modes.items():
                redis.flushall()
                rates[mode].append(opts.n / uvloop.run(run(redis.url)))
    med = {m: statistics.median(r) for m, r in rates.items()}
    print(f"one await per job, N={opts.n}, median of {opts.runs}, load at start {load:.2f}")
    for mode, rate in med.items():
        runs = " / ".join(f"{r:,.0f}" for r in rates[mode])
        share = med["errands"] / rate
        print(f"  {mode:16} {rate:8,.0f} jobs/s  (runs {runs})  errands = {share:.0%} of it")


if __name__ == "__main__":
    main()
