"""What bench/enqueue_cost.py and bench/hotpath_cost.py count: the commands Redis ran, by name,
from INFO commandstats (INFO's, CONFIG's and the script calls' own left out), and the script
calls' count and time. Imported from the scripts' own folder (``python bench/<script>.py``)."""

from __future__ import annotations

from redis.asyncio import Redis

SKIP = ("cmdstat_info", "cmdstat_config", "cmdstat_evalsha", "cmdstat_eval")


async def stats(redis: Redis) -> tuple[dict[str, int], int, int]:
    """Commands Redis ran so far by name, and the EVALSHA calls' count and usec."""
    got = await redis.info("commandstats")
    ran = {k[8:]: int(v["calls"]) for k, v in got.items() if k not in SKIP}
    evalsha = got.get("cmdstat_evalsha", {"calls": 0, "usec": 0})
    return ran, int(evalsha["calls"]), int(evalsha["usec"])
