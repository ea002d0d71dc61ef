"""Lua 5.1 (Redis' and Valkey's) compiles at most 200 local variables live at once in one
function: a script's main chunk holds the top-level locals of every lib it includes
(store/luasource.py) besides its own, and one local too many fails the whole script at its
first call, on every call. ack.lua, which includes the most, had 11 to spare (2026-12-05), 54
once store/luasource.py left out the lib functions a script never uses: each script must keep
HEADROOM, so that the lib that nears the limit is split before it is hit."""

from __future__ import annotations

from importlib import resources

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from errands.store.luasource import lua_source

HEADROOM = 8

SCRIPTS = sorted(
    p.name.removesuffix(".lua")
    for p in resources.files("errands.store").joinpath("lua").iterdir()
    if p.name.endswith(".lua")
)


def _with_locals(name: str, extra: int) -> str:
    """The script with ``extra`` more locals live through its whole main chunk."""
    names = ", ".join(f"headroom_{i}" for i in range(extra))
    return f"local {names}\n{lua_source(name)}"


@pytest.mark.parametrize("name", SCRIPTS)
async def test_each_script_compiles_with_room_for_more_locals(redis: Redis, name: str) -> None:
    await redis.script_load(_with_locals(name, HEADROOM))


async def test_the_check_fails_a_script_past_the_limit(redis: Redis) -> None:
    with pytest.raises(ResponseError, match="more than 200 local variables"):
        await redis.script_load(_with_locals("ack", 200))
