"""The package's shape: no import cycles between modules, dependencies point down the layers, and
no module grows past ~400 lines, nor any Lua script or lib (``store/lua/``), whose named functions
stay under ~60 lines. Every import counts, including those under ``TYPE_CHECKING`` and
inside functions: a cycle hidden from the interpreter is still one for the reader."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "errands"

# what each folder may not import (the top-level modules are the primitives and the user API)
FORBIDDEN = {
    "store": {"worker", "admin", "periodic", "longwork", "outbox", "dedup", "cli", "web"}
    | {"contrib", "workflows"},
    "periodic": {"worker", "admin", "longwork", "outbox", "cli", "web", "contrib", "workflows"},
    "longwork": {"worker", "admin", "periodic", "sync", "outbox", "cli", "web", "contrib"}
    | {"workflows"},
    "dedup": {"worker", "admin", "periodic", "longwork", "outbox", "sync", "cli", "web", "contrib"}
    | {"workflows"},
    "workflows": {"worker", "admin", "periodic", "longwork", "outbox", "dedup", "sync", "cli"}
    | {"web", "contrib"},
    "admin": {"worker", "cli", "web", "contrib"},
    "worker": {"admin", "cli", "web", "contrib"},
    "web": {"worker", "cli"},
    "sync": {"worker", "cli", "web", "contrib"},
    "contrib": {"cli", "web"},
    # the stack-independent outbox (rows, the relay): the per-stack parts are in contrib/
    "outbox": {"worker", "admin", "periodic", "sync", "longwork", "cli", "web", "contrib"},
    "limits": {"store", "worker", "admin", "periodic", "sync", "cli", "web", "contrib"},
}
# top-level modules that every layer builds on: they import no folder
PRIMITIVES = {"errors", "clock", "job", "backoff", "serialization", "convert", "aio", "middleware"}
MAX_LINES = 400
LUA = SRC / "store" / "lua"
MAX_LUA_FUNCTION_LINES = 60
# a named function's first line (``local function f(``, ``function f(``), its indent
LUA_FUNCTION = re.compile(r"^(\s*)(?:local\s+)?function\s+([\w.:]+)\s*\(")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, name: str) -> set[str]:
    """Modules of the package that ``path`` imports (``from pkg import mod`` names ``pkg.mod``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "errands" or target.startswith("errands."):
                found.add(target)
                found.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("errands"))
    return found


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in SRC.rglob("*.py")}
    return {
        name: {t for t in imports(path, name) if t in files and t != name}
        for name, path in files.items()
    }


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 else ""


def test_no_import_cycles() -> None:
    edges = graph()
    # a module taking a name from an ancestor package's face (``from .. import __version__``)
    # would close a loop through the face's re-exports that no module really has
    for name in edges:
        edges[name] = {t for t in edges[name] if not name.startswith(t + ".")}
    assert cycles(edges) == []


def test_the_checker_sees_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_dependencies_point_down(folder: str) -> None:
    bad = [
        f"{name} imports {target}"
        for name, targets in graph().items()
        if layer(name) == folder
        for target in targets
        if layer(target) in FORBIDDEN[folder]
    ]
    assert bad == []


def test_primitives_import_no_folder() -> None:
    bad = [
        f"{name} imports {target}"
        for name, targets in graph().items()
        if name.removeprefix("errands.") in PRIMITIVES
        for target in targets
        if layer(target)
    ]
    assert bad == []


def test_modules_stay_small() -> None:
    big = {
        str(p.relative_to(SRC)): n
        for p in SRC.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert big == {}


def lua_functions(text: str) -> dict[str, int]:
    """The named functions of Lua source (nested ones too) and their lengths in lines: from the
    ``function`` line to the first ``end`` at its indent (the project's layout; -1 when none, a
    one-line function is 1)."""
    lines = text.splitlines()
    found: dict[str, int] = {}
    for i, line in enumerate(lines):
        if not (m := LUA_FUNCTION.match(line)):
            continue
        name = f"{m.group(2)}:{i + 1}"
        if re.search(r"\bend$", line.rstrip()):
            found[name] = 1
            continue
        ends = (j for j in range(i + 1, len(lines)) if re.match(m.group(1) + r"end\b", lines[j]))
        found[name] = next((j - i + 1 for j in ends), -1)
    return found


def test_lua_files_stay_small() -> None:
    big = {
        str(p.relative_to(LUA)): n
        for p in LUA.rglob("*.lua")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert big == {}


def test_lua_functions_stay_small() -> None:
    long = {
        f"{p.relative_to(LUA)} {name}": n
        for p in LUA.rglob("*.lua")
        for name, n in lua_functions(p.read_text()).items()
        if n > MAX_LUA_FUNCTION_LINES or n < 0
    }
    assert long == {}


def test_the_lua_checker_measures_functions() -> None:
    text = "local function f(a)\n  local function g() return 1 end\n  if a then\n  end\nend\n"
    assert lua_functions(text) == {"f:1": 5, "g:2": 1}
    assert lua_functions("function h()\n  x()\n") == {"h:1": -1}
