"""The worker's hot scripts (fetch, ack) as Redis Functions libraries (Redis and Valkey >= 7).

A script called by ``EVALSHA`` runs its whole chunk on every call: every ``local function`` of
every lib it includes (store/luasource.py, which leaves out those the script never refers to)
is made anew as a closure, 67 of them for fetch and 66 for ack (with the script's own top-level
ones, 6 and 1: 73 and 67 in all). A library loaded once by ``FUNCTION LOAD`` runs its chunk
once, at load time: a ``FCALL`` of it runs only the script's own body (whose 6 and 1 are still
made by each call). The library is made from the same sources (:func:`function_library`, text
to text):

- ``#!lua name=errands_<script>_<hash>``: the hash is that of the rest of the text, so that two
  versions of errands (a rolling deploy) each call their own and a load of one already there
  (another worker's) is the same library;
- ``local KEYS, ARGV``: the libs' functions that read ``KEYS`` or ``ARGV`` (globals to a
  script) read these upvalues, which the callback sets to its call's keys and arguments;
- the included libs' text, at the library's top level (run once);
- ``redis.register_function{function_name = <the library's name>, callback = function(keys,
  args) KEYS, ARGV = keys, args <resets> <the script's own lines> end}``: the body's locals
  are the callback's, its ``return`` the call's reply.

A lib's top-level local that its functions change keeps state for one script call (a call's
rate logs read, its budget of workflow steps): as a script's, it is made anew by each call; in a
library it would outlive the call and leak into the next one. Such a line is marked
``--@percall`` (``local NAME[, NAME] = EXPR  --@percall ...``, on one line): the callback starts
by assigning ``NAME[, NAME] = EXPR`` again (the resets). tests/store/test_fnlib.py checks that
every top-level local a function assigns or fills is marked, and that no lib's top level calls
``redis`` (there is no call to serve at load time).

The same Lua runs either way (FCALL or EVALSHA), with the same keys and arguments: every
guarantee of the scripts (idempotent re-send, fencing, checks before the first write) holds for
both. How a worker uses the libraries: store/hotcalls.py.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources

from .luasource import lua_source

__all__ = ["PER_CALL", "Library", "function_library", "library", "older_versions", "script_parts"]

PER_CALL = "--@percall"
_PER_CALL_LINE = re.compile(
    r"^local\s+([A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)*)\s*=\s*(.+?)\s*--@percall\b"
)
_NAME = "{{errands_library_name}}"


@dataclass(frozen=True)
class Library:
    """A library's name (its function's too) and its text, as ``FUNCTION LOAD`` takes it."""

    name: str
    text: str


def function_library(script: str, libs: str, body: str) -> Library:
    """The library of ``script`` (its name: letters, digits, ``_``) whose top level is ``libs``
    (the included libs' text) and whose function runs ``body`` (the script's own lines)."""
    if not re.fullmatch(r"[A-Za-z0-9_]+", script):
        raise ValueError(f"not a library name part: {script!r}")
    resets = [f"{m[1]} = {m[2]}" for line in libs.splitlines() if (m := _PER_CALL_LINE.match(line))]
    text = "\n".join(
        [
            f"#!lua name={_NAME}",
            "local KEYS, ARGV",
            libs.rstrip("\n"),
            f"redis.register_function{{function_name = '{_NAME}', callback = function(keys, args)",
            "KEYS, ARGV = keys, args",
            *resets,
            body.rstrip("\n"),
            "end}",
            "",
        ]
    )
    digest = hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:16]
    name = f"errands_{script}_{digest}"
    return Library(name, text.replace(_NAME, name))


def script_parts(name: str) -> tuple[str, str]:
    """``lua_source(name)`` cut in two: the text of its libs (and of the script's lines before its
    last ``--@include``: its header's comments) and the script's own lines after it."""
    raw = resources.files("errands.store").joinpath("lua", f"{name}.lua").read_text("utf-8")
    lines = raw.rstrip().splitlines()
    last = max((i for i, line in enumerate(lines) if line.startswith("--@include ")), default=-1)
    if any(line.strip() and not line.startswith("--") for line in lines[:last]):
        raise ValueError(f"{name}.lua: code before its last --@include (it would run at load)")
    body = "\n".join(lines[last + 1 :]) + "\n"
    source = lua_source(name)
    if not source.endswith(body):
        raise ValueError(f"{name}.lua: its own lines are not the end of its source")
    return source[: len(source) - len(body)], body


@cache
def library(name: str) -> Library:
    """The library of ``lua/<name>.lua`` (see the module's docstring)."""
    return function_library(name, *script_parts(name))


def older_versions(name: str, libraries: Sequence[str]) -> list[str]:
    """Of the ``libraries`` a server holds (their names), those of script ``name`` but of
    another text than this errands' (another version's, ``errands_<name>_<16 hex digits>``)."""
    mine = library(name).name
    pattern = re.compile(rf"errands_{re.escape(name)}_[0-9a-f]{{16}}")
    return [lib for lib in libraries if lib != mine and pattern.fullmatch(lib)]
