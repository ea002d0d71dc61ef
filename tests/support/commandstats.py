"""Commands a server ran, by name (INFO commandstats, those run inside scripts included): the
tests that pin how many commands a script call sends reset the counts, make the call, then read
them here."""

from __future__ import annotations

from redis.asyncio import Redis

__all__ = ["command_calls"]


async def command_calls(redis: Redis) -> dict[str, int]:
    """Calls of each command since the last CONFIG RESETSTAT, by lower-case name."""
    stats = await redis.info("commandstats")
    return {k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items()}
