"""The text of the Lua scripts in ``lua/``, their shared helpers (``lua/lib/``) included.

A lib is included whole, but for its ``local function`` blocks that the script never refers
to, directly or through another kept block: each such block is left out. EVALSHA runs the
whole text of a script on every call, and each ``local function`` there is a closure built
per call (about a thousand Redis instructions, more as the locals in scope grow): ack, which
includes the flow-control libs for the few lines that free a partition's slot, built 107 per
call where it refers to 55. Whether a block is referred to is decided on its name appearing
as a word in the kept text outside comments (a local cannot be reached any other way), so a
kept block never refers to a left-out one.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable

__all__ = ["lua_source"]

_FUNCTION = re.compile(r"local function (\w+)")
_WORD = re.compile(r"[A-Za-z_]\w*")


@cache
def lua_source(name: str) -> str:
    """The text of ``lua/<name>.lua``, with each ``--@include <lib>`` line replaced by
    ``lua/lib/<lib>.lua`` (helpers shared by several scripts) less the lib's functions the
    script does not use. A lib may include libs too; each is included once per script, at its
    first ``--@include`` (its locals are then in scope)."""
    lua = resources.files("errands.store").joinpath("lua")
    lines: list[tuple[str, bool]] = []
    _expand(lua, lua.joinpath(f"{name}.lua"), set(), lines, in_lib=False)
    return "\n".join(_unused_left_out(lines, name)) + "\n"


def _expand(
    lua: Traversable,
    path: Traversable,
    seen: set[str],
    lines: list[tuple[str, bool]],
    *,
    in_lib: bool,
) -> None:
    for line in path.read_text("utf-8").rstrip().splitlines():
        if line.startswith("--@include "):
            lib = line.split()[1]
            if lib not in seen:
                seen.add(lib)
                _expand(lua, lua.joinpath("lib", lib + ".lua"), seen, lines, in_lib=True)
        else:
            lines.append((line, in_lib))


def _unused_left_out(lines: list[tuple[str, bool]], script: str) -> list[str]:
    """The lines, less each lib's ``local function`` block (from its line to the next line
    that is ``end``, unindented) whose name the rest does not use."""
    blocks: dict[str, tuple[int, int]] = {}  # name -> its first and last line
    rest: list[str] = []
    i = 0
    while i < len(lines):
        line, in_lib = lines[i]
        found = _FUNCTION.match(line) if in_lib else None
        if found is None:
            rest.append(line)
            i += 1
            continue
        end = _block_end(lines, i, script)
        blocks[found.group(1)] = (i, end)
        i = end + 1
    used = _used(blocks, lines, rest)
    dropped = {
        n
        for name, (first, last) in blocks.items()
        if name not in used
        for n in range(first, last + 1)
    }
    return [line for n, (line, _) in enumerate(lines) if n not in dropped]


def _block_end(lines: list[tuple[str, bool]], first: int, script: str) -> int:
    """The line ending the ``local function`` block that starts at ``first``: the first
    unindented ``end`` (the libs' style; another ``local function`` before it is an error)."""
    for n in range(first + 1, len(lines)):
        line = lines[n][0]
        if line == "end":
            return n
        if _FUNCTION.match(line):
            break
    raise ValueError(f"{script}.lua: no unindented 'end' closes {lines[first][0]!r}")


def _used(
    blocks: dict[str, tuple[int, int]], lines: list[tuple[str, bool]], rest: list[str]
) -> set[str]:
    """The names of the blocks the text outside them refers to, directly or through others."""
    pending = _words(rest) & blocks.keys()
    used: set[str] = set()
    while pending:
        name = pending.pop()
        used.add(name)
        first, last = blocks[name]
        body = [line for line, _ in lines[first + 1 : last + 1]]
        pending |= (_words(body) & blocks.keys()) - used
    return used


def _words(lines: list[str]) -> set[str]:
    """The words of ``lines`` outside comments (a ``--`` after a quote may be in a string: the
    line is then read whole, which can only keep more)."""
    words: set[str] = set()
    for line in lines:
        code, dash, _ = line.partition("--")
        words.update(_WORD.findall(line if dash and ("'" in code or '"' in code) else code))
    return words
