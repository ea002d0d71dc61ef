"""store/fnlib.py: the hot scripts as libraries of Redis Functions. The text made (a pure
function), the libraries loading on the server (Lua 5.1's limits: 200 locals in the library's
top level, 60 upvalues in the callback; Redis 7.0 refuses the standard library at load time),
the per-call state made anew by each call (``--@percall``), and an audit of the libs: every
top-level local a function changes is marked, and no top-level line calls anything at load."""

from __future__ import annotations

import re
from importlib import resources

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from errands.store.fnlib import Library, function_library, library, script_parts
from errands.store.hotcalls import HOT
from errands.store.luasource import lua_source

LIBS = sorted(
    p.name.removesuffix(".lua")
    for p in resources.files("errands.store").joinpath("lua", "lib").iterdir()
    if p.name.endswith(".lua")
)

HEADROOM = 8  # (as tests/store/test_lua_headroom.py's)

PER_CALL_LIB = """local SEEN = {0}  --@percall: bumped by each call
local A, B = 0, {}  --@percall
local KEEP = {0}
local function bump()
  SEEN[1] = SEEN[1] + 1
  KEEP[1] = KEEP[1] + 1
  A = A + 1
  return {SEEN[1], KEEP[1], A, #ARGV, KEYS[1]}
end
"""


async def _load(redis: Redis, text: str) -> None:
    try:
        await redis.execute_command("FUNCTION", "LOAD", text)
    except ResponseError as exc:
        if "already exists" not in str(exc):
            raise


def test_the_text_of_a_library() -> None:
    lib = function_library("t", "local X = 1  --@percall\n", "return X\n")
    assert re.fullmatch(r"errands_t_[0-9a-f]{16}", lib.name)
    lines = lib.text.splitlines()
    assert lines[0] == f"#!lua name={lib.name}"
    assert lines[1] == "local KEYS, ARGV"
    assert lines[2] == "local X = 1  --@percall"
    assert f"function_name = '{lib.name}'" in lines[3]
    assert lines[4:] == ["KEYS, ARGV = keys, args", "X = 1", "return X", "end}"]
    # the name follows the text: another body, another name; the same, the same
    assert function_library("t", "local X = 1\n", "return X\n").name != lib.name
    assert function_library("t", "local X = 1  --@percall\n", "return X\n") == lib
    with pytest.raises(ValueError):
        function_library("t-1", "", "return 1\n")


@pytest.mark.parametrize("name", HOT)
def test_the_parts_of_a_hot_script(name: str) -> None:
    libs, body = script_parts(name)
    assert libs + body == lua_source(name)
    own = resources.files("errands.store").joinpath("lua", f"{name}.lua").read_text("utf-8")
    assert own.rstrip().endswith(body.rstrip())
    assert "local function" not in body.split("\n", 1)[0]
    assert library(name).text.count("redis.register_function") == 1


@pytest.mark.parametrize("name", HOT)
async def test_the_libraries_load(redis: Redis, name: str) -> None:
    lib = library(name)
    await _load(redis, lib.text)
    await _load(redis, lib.text)  # (another worker's load: "already exists")
    listed = await redis.execute_command("FUNCTION", "LIST", "LIBRARYNAME", lib.name)
    assert listed, lib.name


def _with_more(name: str, extra: int) -> Library:
    """The library of ``name`` with ``extra`` more top-level locals, each an upvalue of the
    callback (Lua 5.1: at most 200 locals in a function, 60 upvalues)."""
    more = [f"headroom_{i}" for i in range(extra)]
    libs, body = script_parts(name)
    return function_library(
        name, f"local {', '.join(more)}\n{libs}", f"local _ = {{{', '.join(more)}}}\n{body}"
    )


@pytest.mark.parametrize("name", HOT)
async def test_the_libraries_have_room_for_more_locals_and_upvalues(
    redis: Redis, name: str
) -> None:
    lib = _with_more(name, HEADROOM)
    try:
        await _load(redis, lib.text)
    finally:
        await redis.execute_command("FUNCTION", "DELETE", lib.name)
    with pytest.raises(ResponseError, match="upvalues"):
        await _load(redis, _with_more(name, 60).text)


async def test_per_call_state_is_made_anew_by_each_call(redis: Redis) -> None:
    """SEEN and A (marked) start again at each call; KEEP (unmarked) would leak: the reason of
    the marks. KEYS and ARGV are the call's."""
    lib = function_library("percall", PER_CALL_LIB, "return bump()\n")
    await _load(redis, lib.text)
    try:
        first = await redis.fcall(lib.name, 1, "k1", "a")
        second = await redis.fcall(lib.name, 1, "k2", "a", "b")
        assert first[0] == second[0] == 1 and first[2] == second[2] == 1
        assert second[1] == first[1] + 1  # (not reset: what an unmarked table does)
        assert (first[3:], second[3:]) == ([1, b"k1"], [2, b"k2"])
    finally:
        await redis.execute_command("FUNCTION", "DELETE", lib.name)


def _code(line: str) -> str:
    """A line of Lua without its strings and comment (enough for the libs' one-line strings)."""
    line = re.sub(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"", "''", line)
    return line.split("--", 1)[0]


def _depths(text: str) -> list[tuple[int, str]]:
    """Each line's code with the depth of blocks it starts in (0: the top level)."""
    out, depth = [], 0
    for line in text.splitlines():
        code = _code(line)
        out.append((depth, code))
        depth += len(re.findall(r"\b(?:function|do|if|repeat)\b", code))
        depth -= len(re.findall(r"\b(?:end|until)\b", code))
    assert depth == 0
    return out


def _top_level_names(lines: list[tuple[int, str]]) -> set[str]:
    names: set[str] = set()
    for depth, code in lines:
        m = re.match(r"local\s+(?!function\b)([\w\s,]+?)\s*=", code)
        if depth == 0 and m:
            names.update(n.strip() for n in m[1].split(","))
    return names


def _unmarked(text: str) -> list[tuple[str, str]]:
    """The top-level locals of ``text`` a function assigns or fills, not marked --@percall."""
    lines = _depths(text)
    marked = set()
    for line in text.splitlines():
        if "--@percall" in line and (m := re.match(r"local\s+([\w\s,]+?)\s*=", line)):
            marked.update(n.strip() for n in m[1].split(","))
    unmarked = []
    for name in sorted(_top_level_names(lines) - marked):
        target = rf"(?<![\w.]){name}\s*(?:\[[^\]]*\]|\.\w+)?\s*(?:,[^=~<>]*)?(?<![~<>=])=(?!=)"
        for depth, code in lines:
            if depth > 0 and re.search(target, code) and not re.match(r"\s*local\b", code):
                unmarked.append((name, code.strip()))
            if depth > 0 and re.search(rf"table\.(?:insert|remove)\(\s*{name}\b", code):
                unmarked.append((name, code.strip()))
    return unmarked


@pytest.mark.parametrize("lib", LIBS)
def test_a_top_level_local_a_function_changes_is_made_anew_by_each_call(lib: str) -> None:
    """In a library a lib's top level runs once: a top-level local that a function assigns or
    fills (a table's field) would keep one call's state for the next one. Each must be marked
    ``--@percall`` (made anew at each call: store/fnlib.py)."""
    text = resources.files("errands.store").joinpath("lua", "lib", f"{lib}.lua").read_text()
    unmarked = _unmarked(text)
    assert not unmarked, f"lib/{lib}.lua: top-level locals changed by a function: {unmarked}"


@pytest.mark.parametrize("lib", LIBS)
def test_no_top_level_line_runs_anything_at_load(lib: str) -> None:
    """A library's top level runs at FUNCTION LOAD: no call to serve (``redis.call``, KEYS and
    ARGV), and Redis 7.0 lets it use none of the standard library (``string``, ``math``...)."""
    text = resources.files("errands.store").joinpath("lua", "lib", f"{lib}.lua").read_text()
    used = r"\b(?:redis|string|math|table|KEYS|ARGV|cjson|tonumber|tostring|unpack|pairs|ipairs)\b"
    bad = [
        code.strip()
        for depth, code in _depths(text)
        if depth == 0 and not code.startswith("local function") and re.search(used, code)
    ]
    assert not bad, f"lib/{lib}.lua runs at load: {bad}"


def test_the_audit_finds_an_unmarked_change() -> None:
    """(The audit above catches what it is meant to: KEEP, not the marked SEEN and A.)"""
    assert _top_level_names(_depths(PER_CALL_LIB)) == {"SEEN", "A", "B", "KEEP"}
    assert _unmarked(PER_CALL_LIB) == [("KEEP", "KEEP[1] = KEEP[1] + 1")]
    assert _unmarked(PER_CALL_LIB.replace("  --@percall", "")) == [
        ("A", "A = A + 1"),
        ("KEEP", "KEEP[1] = KEEP[1] + 1"),
        ("SEEN", "SEEN[1] = SEEN[1] + 1"),
    ]


def test_the_empty_rate_log_is_spelt_as_its_width_says() -> None:
    """ratelog.lua spells LIM_EMPTY out ('#' and LIM_C zeros: a library's top level has no
    string.rep on Redis 7.0): it must stay what the width makes it."""
    text = resources.files("errands.store").joinpath("lua", "lib", "ratelog.lua").read_text()
    width = re.search(r"^local LIM_C = (\d+)$", text, re.M)
    empty = re.search(r"^local LIM_EMPTY = '([^']*)'", text, re.M)
    assert width is not None and empty is not None
    assert empty[1] == "#" + "0" * int(width[1])
