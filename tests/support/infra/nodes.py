"""One ``redis-server`` process (data node or sentinel) on loopback, in its own directory."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import redis
from redis.asyncio import Redis as AsyncRedis

from errands.store.devserver import find_server_binary

from .tls import TLSFiles

__all__ = ["Node", "free_port", "own_node"]

_taken: set[int] = set()


def free_port() -> int:
    """A free loopback port not handed out before in this process (two nodes started one
    after the other must not be given the same port before the first one binds it)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _taken:
            _taken.add(port)
            return port


class Node:
    """A redis-server started with ``args``; ``conf`` (sentinels need a writable config file)
    is written to ``node.conf``. With ``tls`` the node listens with TLS only, on ``port``."""

    def __init__(
        self,
        root: Path,
        name: str,
        args: Sequence[str] = (),
        *,
        conf: str | None = None,
        sentinel: bool = False,
        tls: TLSFiles | None = None,
        tls_auth_clients: str = "no",
        password: str | None = None,
    ) -> None:
        self.name = name
        self.port = free_port()
        self.dir = root / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.args = list(args)
        self.conf = conf
        self.sentinel = sentinel
        self.tls = tls
        self.tls_auth_clients = tls_auth_clients
        self.password = password  # for the admin client of the tests
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        argv = [find_server_binary()]
        if self.conf is not None:
            path = self.dir / "node.conf"
            if not path.exists():  # a sentinel rewrites its file: keep it across restarts
                path.write_text(self.conf)
            argv.append(str(path))
        if self.sentinel:
            argv.append("--sentinel")
        if self.tls is not None:
            argv += ["--port", "0", "--tls-port", str(self.port)]
            argv += ["--tls-cert-file", str(self.tls.server_cert)]
            argv += ["--tls-key-file", str(self.tls.server_key)]
            argv += ["--tls-ca-cert-file", str(self.tls.ca_cert)]
            argv += ["--tls-auth-clients", self.tls_auth_clients]
        else:
            argv += ["--port", str(self.port)]
        argv += ["--bind", "127.0.0.1", "--dir", str(self.dir), "--logfile", "node.log"]
        argv += ["--protected-mode", "no"]
        if not self.sentinel:
            # no snapshots; replicas sync at once (the default waits 5 s for more replicas)
            argv += ["--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0"]
        return argv + self.args

    def start(self, timeout: float = 10.0) -> Node:
        self.process = subprocess.Popen(
            self.argv(),
            cwd=self.dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start:\n{self.log_tail()}")
            if self.ping():
                return self
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"{self.name} did not answer within {timeout}s:\n{self.log_tail()}")

    def client(self, **kwargs: Any) -> redis.Redis:
        """A blocking admin client (the server's default user)."""
        options: dict[str, Any] = {"socket_timeout": 2.0, "socket_connect_timeout": 1.0}
        if self.password is not None:
            options["password"] = self.password
        if self.tls is not None:
            options.update(
                ssl=True,
                ssl_ca_certs=str(self.tls.ca_cert),
                ssl_certfile=str(self.tls.client_cert),
                ssl_keyfile=str(self.tls.client_key),
            )
        options.update(kwargs)
        return redis.Redis("127.0.0.1", self.port, **options)

    def call(self, *args: Any) -> Any:
        with contextlib.closing(self.client()) as c:
            return c.execute_command(*args)

    def ping(self) -> bool:
        try:
            with contextlib.closing(self.client(socket_timeout=0.5)) as c:
                return bool(c.ping())
        except (redis.RedisError, OSError):
            return False

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL (no shutdown, no save): what a crashed host looks like to its peers."""
        if self.alive:
            assert self.process is not None
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.alive:
            assert self.process is not None
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, n: int = 30) -> str:
        path = self.dir / "node.log"
        lines = path.read_text(errors="replace").splitlines() if path.exists() else []
        return "\n".join(lines[-n:])


def wait_for(what: str, check: Any, timeout: float = 20.0, interval: float = 0.05) -> Any:
    """Poll ``check()`` until it returns something truthy; raise naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except (redis.RedisError, OSError) as exc:
            last, result = exc, None
        if result:
            return result
        time.sleep(interval)
    raise TimeoutError(f"{what} not reached within {timeout}s (last error: {last!r})")


@contextlib.asynccontextmanager
async def own_node(
    tmp_path: Path, name: str, args: Sequence[str] = ()
) -> AsyncIterator[AsyncRedis]:
    """A server of the test's own (nothing else writes to it: a test may demote it), and a
    client of it; both gone at the end."""
    node = Node(tmp_path, name, list(args)).start()
    try:
        client = AsyncRedis(host="127.0.0.1", port=node.port)
        try:
            yield client
        finally:
            await client.aclose()
    finally:
        node.kill()
