"""The text of the Lua scripts in ``lua/``, their shared helpers (``lua/lib/``) included."""

from __future__ import annotations

from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable

__all__ = ["lua_source"]


@cache
def lua_source(name: str) -> str:
    """The text of ``lua/<name>.lua``, with each ``--@include <lib>`` line replaced by
    ``lua/lib/<lib>.lua`` (helpers shared by several scripts). A lib may include libs too; each
    is included once per script, at its first ``--@include`` (its locals are then in scope)."""
    lua = resources.files("errands.store").joinpath("lua")
    lines: list[str] = []
    _expand(lua, lua.joinpath(f"{name}.lua"), set(), lines)
    return "\n".join(lines) + "\n"


def _expand(lua: Traversable, path: Traversable, seen: set[str], lines: list[str]) -> None:
    for line in path.read_text("utf-8").rstrip().splitlines():
        if line.startswith("--@include "):
            lib = line.split()[1]
            if lib not in seen:
                seen.add(lib)
                _expand(lua, lua.joinpath("lib", lib + ".lua"), seen, lines)
        else:
            lines.append(line)
