"""Starting worker subprocesses for the process-level tests, and waiting for outcomes.

Every process is started in its own session (process group) so that ``Procs.close()`` can
SIGKILL it together with any children (``--processes N`` starts a supervisor and N workers).
Output goes to files under the test's tmp dir (no pipes to fill up); ``Proc.output()`` reads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import orjson
from redis.asyncio import Redis

from errands.store.keys import Keys
from tests.support.apps import record_key

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def subprocess_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment with the repo (for ``tests.support.apps``) and its src first on
    PYTHONPATH."""
    env = dict(os.environ)
    env.pop("ERRANDS_REDIS_URL", None)
    parts = [str(ROOT / "src"), str(ROOT)]
    if env.get("PYTHONPATH"):
        parts.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(parts)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


class Proc:
    """One subprocess; stdout and stderr are collected in ``log``."""

    def __init__(self, args: list[str], log: Path, env: Mapping[str, str] | None = None) -> None:
        self.args = args
        self.log = log
        self._out = log.open("wb")
        self.popen = subprocess.Popen(
            args,
            cwd=ROOT,
            env=subprocess_env(env),
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.started = time.monotonic()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def poll(self) -> int | None:
        return self.popen.poll()

    def output(self) -> str:
        self._out.flush()
        return self.log.read_text(errors="replace")

    def send(self, sig: signal.Signals) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)

    async def wait(self, timeout: float) -> int:
        """Wait for the exit code without blocking the event loop; fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        while (code := self.popen.poll()) is None:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"process {self.args} still running after {timeout}s; output:\n"
                    + self.output()[-3000:]
                )
            await asyncio.sleep(0.02)
        return code

    def kill_group(self) -> None:
        """SIGKILL the process and everything in its process group (its children)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)
        self._out.close()


class Procs:
    """Starts subprocesses for one test and kills every one of them (and their children) on
    ``close()``, whatever the test did."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[Proc] = []

    def start(self, args: list[str], env: Mapping[str, str] | None = None) -> Proc:
        log = self.tmp / f"proc{len(self.procs)}.log"
        proc = Proc([sys.executable, *args], log, env)
        self.procs.append(proc)
        return proc

    def worker(
        self,
        app: str,
        redis_url: str,
        namespace: str,
        *extra: str,
        env: Mapping[str, str] | None = None,
    ) -> Proc:
        """``python -m errands worker tests.support.apps.<app> --redis URL --namespace NS ...``."""
        args = ["-m", "errands", "worker", f"tests.support.apps.{app}"]
        return self.start([*args, "--redis", redis_url, "--namespace", namespace, *extra], env)

    def close(self) -> None:
        for proc in self.procs:
            proc.kill_group()

    def __enter__(self) -> Procs:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


async def eventually(
    probe: Callable[[], Awaitable[T]], timeout: float, what: str, interval: float = 0.02
) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {value!r})")
        await asyncio.sleep(interval)


async def records(redis: Redis, namespace: str, what: str) -> list[dict[str, Any]]:
    """What the test apps recorded under ``what`` (see ``tests/support/apps``)."""
    return [orjson.loads(r) for r in await redis.lrange(record_key(namespace, what), 0, -1)]


async def live_pools(redis: Redis, namespace: str) -> list[str]:
    return [p.decode() for p in await redis.zrange(Keys(namespace).pools, 0, -1)]


async def wait_ready(redis: Redis, namespace: str, pools: int, timeout: float = 15) -> None:
    """Wait until ``pools`` pools are registered, idle (they fetched and found nothing) and
    subscribed to the wake-up channel: ready to race for the next job."""
    keys = Keys(namespace)

    async def ready() -> bool:
        registered = await redis.zcard(keys.pools)
        idle = await redis.scard(keys.idle)
        [(_channel, listeners)] = await redis.pubsub_numsub(keys.wake_channel)
        return registered == idle == listeners == pools

    await eventually(ready, timeout, f"{pools} pools to be ready")


async def running_counts(redis: Redis, namespace: str) -> dict[str, int]:
    raw = await redis.hgetall(Keys(namespace).running)
    return {k.decode(): int(v) for k, v in raw.items()}


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """Most intervals open at one instant (an interval ending as another starts: no overlap)."""
    events = [(s, 1) for s, _e in intervals] + [(e, -1) for _s, e in intervals]
    events.sort(key=lambda ev: (ev[0], ev[1]))  # ends before starts at equal times
    open_, most = 0, 0
    for _t, delta in events:
        open_ += delta
        most = max(most, open_)
    return most
