"""The text of the Lua scripts in ``lua/``, their shared helpers (``lua/lib/``) included."""

from __future__ import annotations

from functools import cache
from importlib import resources

__all__ = ["lua_source"]


@cache
def lua_source(name: str) -> str:
    """The text of ``lua/<name>.lua``, with each ``--@include <lib>`` line replaced by
    ``lua/lib/<lib>.lua`` (helpers shared by several scripts)."""
    lua = resources.files("errands.store").joinpath("lua")
    lines = []
    for line in lua.joinpath(f"{name}.lua").read_text("utf-8").splitlines():
        if line.startswith("--@include "):
            line = lua.joinpath("lib", line.split()[1] + ".lua").read_text("utf-8").rstrip()
        lines.append(line)
    return "\n".join(lines) + "\n"
