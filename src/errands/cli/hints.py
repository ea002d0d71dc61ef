"""Hints of the admin commands for a namespace that looks wrong: the other namespaces of the
server (an empty one), and those whose running pools serve the job names no pool of this one
serves (an enqueuer or a pool given another namespace, or none: ``errands``, is the usual
cause). Best effort and bounded: at most ~1 s of SCAN, 20 namespaces, and ``HINT_SECONDS`` for
the whole of a hint of the namespaces serving names (its SCAN and its reads together)."""

from __future__ import annotations

import asyncio

from redis.exceptions import ResponseError

from ..admin.client import Client
from ..store.connection import REDIS_ERRORS
from ..store.keys import Keys
from ..store.served import served_names

__all__ = ["HINT_ERRORS", "HINT_SECONDS", "empty_namespace_hint", "served_elsewhere"]

HINT_SECONDS = 1.5  # the most served_elsewhere takes (the SCAN's second, then the reads)

HINT_ERRORS: tuple[type[BaseException], ...] = (*REDIS_ERRORS, ResponseError)
# (and a namespace errands cannot name: Keys refuses it)
_SKIPPED: tuple[type[BaseException], ...] = (ValueError, TypeError, *HINT_ERRORS)


async def other_namespaces(client: Client, key: str = "names") -> set[str]:
    """Up to 20 namespaces of the server besides the client's (none when SCAN fails): those
    where a job was enqueued (``names``), or those where pools run (``pools``)."""
    found: set[str] = set()
    try:
        async with asyncio.timeout(1.0):
            async for name in client.redis.scan_iter(match=f"errands:{{*}}:{key}", count=1000):
                found.add(name.decode(errors="replace")[len("errands:{") : -len("}:" + key)])
                if len(found) >= 20:
                    break
    except HINT_ERRORS:  # a timeout; an ACL user without SCAN: no hint then
        pass
    found.discard(client.keys.namespace)
    return found


async def empty_namespace_hint(client: Client) -> str:
    """No job name in this namespace: name the namespaces this server has (a wrong --namespace,
    or a REDIS_URL that points elsewhere, is the usual cause)."""
    found = await other_namespaces(client)
    hint = f"no job names in namespace {client.keys.namespace!r}"
    if found:
        hint += (
            f"; namespaces on this server: {', '.join(sorted(found))} (use --namespace or --app)"
        )
    return hint


async def served_elsewhere(client: Client, names: list[str]) -> str:
    """``; pools of namespace 'myapp' serve send_email``, for the names given (no running pool
    of the client's namespace serves them) that running pools of another namespace serve.
    Within ``HINT_SECONDS`` in all: the namespaces read by then (a slow server: fewer hints)."""
    hints = []
    try:
        async with asyncio.timeout(HINT_SECONDS):
            for namespace in sorted(await other_namespaces(client, "pools")):
                try:
                    served = await served_names(client.redis, Keys(namespace))
                except _SKIPPED:
                    continue
                if mine := [name for name in names if name in served]:
                    hints.append(f"pools of namespace {namespace!r} serve {', '.join(mine)}")
    except TimeoutError:
        pass  # (the reads of up to 20 namespaces had no bound: inspect queues waited on them)
    return "".join(f"; {hint}" for hint in hints)
