"""The guard on the shared test server (tests/conftest.py's ``redis`` fixture, on REDIS_URL's
server when set): its client refuses, before sending them, the commands that change the server
beyond the test's namespace (flushes, its configuration, its statistics, its ACL users, its
replication, other clients' connections). A test that needs one runs on a server of its own
(``own_redis``/``own_url``).

The check is in the connection's ``pack_command``, which every command of the client goes
through: redis-py's methods (``flushdb()``, ``config_set()``...), ``execute_command`` and
pipelines alike. Clients a test makes itself (``Redis.from_url(redis_url)``, a pool's own) are
not guarded."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection

__all__ = ["ServerWideCommand", "guard", "refusal"]

_COMMANDS = {
    "FLUSHDB", "FLUSHALL", "SWAPDB", "SHUTDOWN", "REPLICAOF", "SLAVEOF", "FAILOVER", "DEBUG",
    "MODULE", "SAVE", "BGSAVE", "BGREWRITEAOF",
}  # fmt: skip
_SUBCOMMANDS = {
    "SCRIPT": {"FLUSH", "KILL"},
    "FUNCTION": {"FLUSH", "KILL", "RESTORE"},
    "CONFIG": {"SET", "RESETSTAT", "REWRITE"},
    "CLIENT": {"KILL", "PAUSE", "UNPAUSE", "UNBLOCK"},
    "ACL": {"SETUSER", "DELUSER", "LOAD", "SAVE"},
    "LATENCY": {"RESET"},
    "SLOWLOG": {"RESET"},
    "CLUSTER": {"RESET", "FAILOVER", "FORGET", "MEET", "REPLICATE", "FLUSHSLOTS", "SAVECONFIG"},
}


class ServerWideCommand(AssertionError):
    """A test sent, on the shared server, a command that changes it beyond its namespace."""


def _word(arg: Any) -> str:
    if isinstance(arg, bytes | bytearray | memoryview):
        return bytes(arg[:16]).decode(errors="replace").upper()
    return str(arg)[:16].upper()


def refusal(args: tuple[Any, ...]) -> str | None:
    """The command's name if the guard refuses it, else None. (redis-py's methods send the
    command and its subcommand as one argument, "CONFIG SET".)"""
    if not args:
        return None
    words = _word(args[0]).split()[:2] + [_word(a) for a in args[1:3]]
    name = " ".join(words[:2])
    if words[0] in _COMMANDS:
        return words[0]
    if len(words) > 1 and words[1] in _SUBCOMMANDS.get(words[0], ()):
        return name
    if words[:2] == ["FUNCTION", "LOAD"] and "REPLACE" in words[2:]:
        return "FUNCTION LOAD REPLACE"  # (overwrites a library of that name: not only ours)
    return None


def guard(client: Redis) -> Redis:
    """``client``, whose connections (made from now on) refuse those commands: the command is
    not sent and ``ServerWideCommand`` is raised to the caller."""
    pool = client.connection_pool
    base: type[AbstractConnection] = pool.connection_class

    class Guarded(base):  # type: ignore[valid-type,misc]
        def pack_command(self, *args: Any) -> list[bytes]:
            refused = refusal(args)
            if refused is not None:
                raise ServerWideCommand(
                    f"{refused} refused on the shared test server (REDIS_URL's when set): "
                    "run this test on a server of its own (own_redis / own_url)"
                )
            return super().pack_command(*args)  # type: ignore[no-any-return]

    Guarded.__name__ = Guarded.__qualname__ = f"Guarded{base.__name__}"
    pool.connection_class = Guarded
    return client
