"""lua_source: the libs a script includes, each once (a lib may include libs too), less the
lib functions the script never refers to."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from errands.store.luasource import _unused_left_out, lua_source

SCRIPTS = sorted(
    p.name.removesuffix(".lua")
    for p in resources.files("errands.store").joinpath("lua").iterdir()
    if p.name.endswith(".lua")
)


@pytest.mark.parametrize("script", ["ack", "settle", "promote", "wf_enqueue", "update_job"])
def test_a_lib_included_twice_is_there_once(script: str) -> None:
    """lib/prio is included by the script or by its libs (dedup, workflows, longwork): one
    definition, before its first use, and no include line left."""
    source = lua_source(script)
    assert source.count("local PRIO_STEP = ") == 1
    if "queue_score(" in source:  # update_job's libs' users of it are left out (below)
        assert source.index("local PRIO_STEP = ") < source.index("queue_score(")
    assert not [line for line in source.splitlines() if line.startswith("--@include")]


def _text(*lines: str, lib: int) -> list[tuple[str, bool]]:
    """``lines``: the first ``lib`` from a lib, the rest the script's own."""
    return [(line, n < lib) for n, line in enumerate(lines)]


def test_a_lib_function_no_kept_text_names_is_left_out() -> None:
    """Used directly, used through another kept one (defined after it, or before), kept; named
    only in a comment or by a left-out one, left out; the script's own functions always kept."""
    lines = _text(
        "local function used()",
        "  return helper() -- not dropped() here",
        "end",
        "local function helper()",
        "  return 1",
        "end",
        "-- dropped() is named in this comment only",
        "local function dropped()",
        "  return only_by_dropped()",
        "end",
        "local function only_by_dropped()",
        "end",
        "local function own_unused()",
        "end",
        "return used()",
        lib=12,
    )
    kept = _unused_left_out(lines, "test")
    assert "local function used()" in kept
    assert "local function helper()" in kept
    assert "local function dropped()" not in kept
    assert "local function only_by_dropped()" not in kept
    assert "local function own_unused()" in kept
    assert kept.count("end") == 3 and len(kept) == 10


def test_a_name_after_a_dash_dash_in_a_string_keeps_its_function() -> None:
    """``'--' .. f()``: the ``--`` opens no comment, so the line is read whole."""
    lines = _text("local function f()", "end", "return '--' .. f()", lib=2)
    assert _unused_left_out(lines, "test") == ["local function f()", "end", "return '--' .. f()"]


def test_a_function_block_without_an_unindented_end_is_an_error() -> None:
    lines = _text("local function f() return 1 end", "local function g()", "end", lib=3)
    with pytest.raises(ValueError, match="no unindented 'end' closes"):
        _unused_left_out(lines, "test")


@pytest.mark.parametrize("script", SCRIPTS)
def test_no_kept_line_names_a_left_out_function(script: str) -> None:
    """The kept text's code (a line with a quote read whole) names no lib function it left
    out: calling one would find a nil global at run time, on a path no test may take."""
    lua = resources.files("errands.store").joinpath("lua").joinpath("lib")
    defined = {
        m.group(1)
        for p in lua.iterdir()
        for m in re.finditer(r"^local function (\w+)", p.read_text("utf-8"), re.M)
    }
    source = lua_source(script)
    kept = set(re.findall(r"^local function (\w+)", source, re.M))
    code = "\n".join(
        line if "'" in line or '"' in line else line.partition("--")[0]
        for line in source.splitlines()
        if not line.lstrip().startswith("--")
    )
    named = set(re.findall(r"[A-Za-z_]\w*", code))
    assert not (named & defined) - kept


def test_ack_builds_fewer_closures_than_it_includes() -> None:
    """ack includes the flow-control libs for freeing a partition's slot: most of their
    functions (the serving of partitions: fetch's) are left out of it."""
    source = lua_source("ack")
    assert "local function lim_release_all(" in source
    assert "local function lim_serve(" not in source
    assert "local function lim_serve(" in lua_source("fetch")
