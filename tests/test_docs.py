"""The documentation is part of the product: its code must compile, the README quick start must
work when pasted, the demo must run, and the data-layout page must name every key and script.

README blocks are marked with an HTML comment on the line before their fence:
``<!-- test: compile -->`` (must compile) or ``<!-- test: file=NAME.py -->`` (must compile, and is
written to NAME.py for the end-to-end quick-start test).
"""

from __future__ import annotations

import ast
import inspect
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from errands.store.keys import Keys

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
MARKED = re.compile(
    r"<!-- test: ([^>]*?) -->\s*\n```python[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL
)


def python_blocks(path: Path) -> list[tuple[int, str]]:
    """(line number, source) of every ```python block of a Markdown file."""
    text = path.read_text("utf-8")
    return [(text.count("\n", 0, m.start()) + 2, m.group(1)) for m in FENCE.finditer(text)]


def marked_blocks(path: Path) -> list[tuple[str, str]]:
    """(marker, source) of the blocks marked ``<!-- test: ... -->``."""
    return [(m.group(1).strip(), m.group(2)) for m in MARKED.finditer(path.read_text("utf-8"))]


def compile_block(source: str, where: str) -> None:
    # Top-level await is allowed: snippets show calls as they appear inside async code.
    compile(source, where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)


def quickstart_files() -> dict[str, str]:
    files = {}
    for marker, source in marked_blocks(README):
        if marker.startswith("file="):
            files[marker.removeprefix("file=")] = source
    return files


def test_readme_marks_the_quick_start() -> None:
    markers = [marker for marker, _ in marked_blocks(README)]
    assert "file=jobs.py" in markers
    assert "file=enqueue.py" in markers
    assert "compile" in markers  # the web-framework snippet
    for marker in markers:
        assert marker == "compile" or re.fullmatch(r"file=[\w.]+\.py", marker), marker


@pytest.mark.parametrize(
    "path", [README, *sorted(DOCS.glob("*.md"))], ids=lambda p: p.relative_to(ROOT).as_posix()
)
def test_python_blocks_compile(path: Path) -> None:
    blocks = python_blocks(path)
    for line, source in blocks:
        compile_block(source, f"{path.relative_to(ROOT)}:{line}")


def test_readme_quick_start_runs(redis_url: str, tmp_path: Path) -> None:
    """Paste jobs.py and enqueue.py, enqueue, run ``python -m errands worker jobs:pool --burst``."""
    namespace = "docs-" + uuid.uuid4().hex[:10]
    for name, source in quickstart_files().items():
        assert 'namespace="myapp"' in source, name
        (tmp_path / name).write_text(
            source.replace('namespace="myapp"', f'namespace="{namespace}"')
        )
    env = {**os.environ, "REDIS_URL": redis_url, "PYTHONUNBUFFERED": "1"}
    env.pop("ERRANDS_REDIS_URL", None)

    enqueued = subprocess.run(
        [sys.executable, "enqueue.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert enqueued.returncode == 0, enqueued.stderr
    assert "enqueued <Job send_email" in enqueued.stdout
    # the warning the README shows for an enqueue before any worker: a warning, the job stored
    warned = f"no running pool serves job name 'send_email' in namespace {namespace!r}"
    assert f"{warned} (no pool is running)" in enqueued.stderr, enqueued.stderr

    worker = subprocess.run(
        [sys.executable, "-m", "errands", "worker", "jobs:pool", "--burst"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert worker.returncode == 0, worker.stderr
    assert "sending 'Welcome!' to ada@example.com (attempt 1)" in worker.stdout
    assert "errands.pool: pool" in worker.stderr  # the INFO lines the README shows
    assert "done in" in worker.stderr


def test_demo_runs(redis_url: str) -> None:
    env = {**os.environ, "REDIS_URL": redis_url, "PYTHONUNBUFFERED": "1"}
    demo = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "all done" in demo.stdout


def _key_names() -> list[str]:
    """How docs/data-layout.md must name each key: ``jobs``, ``q:<``, ..."""
    keys = Keys("ns")
    names = []
    for attr, member in inspect.getmembers(Keys):
        if attr.startswith("_"):
            continue
        if isinstance(member, property):
            names.append(f"`{getattr(keys, attr).removeprefix(keys.prefix)}`")
        elif inspect.isfunction(member):
            built = getattr(keys, attr)("X")
            if isinstance(built, list):  # (done_many: the keys of one function, for many ids)
                continue
            stem = built.removeprefix(keys.prefix)
            assert stem.endswith(":X"), (attr, stem)
            names.append(f"`{stem.removesuffix('X')}<")
    return names


def test_data_layout_names_every_key_and_script() -> None:
    text = (DOCS / "data-layout.md").read_text("utf-8")
    missing = [name for name in _key_names() if name not in text]
    assert not missing, f"keys.py keys missing from docs/data-layout.md: {missing}"
    scripts = sorted(p.name for p in (ROOT / "src" / "errands" / "store" / "lua").glob("*.lua"))
    missing = [name for name in scripts if f"`{name}`" not in text]
    assert not missing, f"Lua scripts missing from docs/data-layout.md: {missing}"


def test_every_page_is_in_the_nav_and_every_link_resolves() -> None:
    nav = (ROOT / "mkdocs.yml").read_text("utf-8")
    for page in DOCS.glob("*.md"):
        assert f": {page.name}" in nav, f"{page.name} is not in the mkdocs.yml nav"
    readme = README.read_text("utf-8")
    for target in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (ROOT / target).is_file(), target


def heading_anchors(path: Path) -> set[str]:
    """The anchors of a page's headings: for the docs, as mkdocs' toc makes them (its default
    slugify: word characters, spaces and hyphens kept, lowercased, each run of spaces and hyphens
    one hyphen) and the ``{#id}`` ones attr_list sets; for the other pages (the READMEs, which
    GitHub renders), as GitHub does (the same, but each space a hyphen, runs kept)."""
    anchors = set()
    for _, line in prose_lines(path):
        heading = re.match(r"#+\s+(.*?)\s*$", line)
        if heading:
            text = heading.group(1)
            explicit = re.search(r"\{#([\w-]+)\}", text)
            if explicit:
                anchors.add(explicit.group(1))
            slug = re.sub(r"[^\w\s-]", "", text.split("{#")[0]).strip().lower()
            docs = path.parent == DOCS
            anchors.add(re.sub(r"[-\s]+", "-", slug) if docs else slug.replace(" ", "-"))
    return anchors


def test_every_link_between_pages_and_its_anchor_resolve() -> None:
    """Each relative link of the docs and the README to a page names a page that exists and, with
    ``#anchor``, one of its headings (a renamed heading left links to it dead)."""
    dead = []
    for path in [README, *sorted(DOCS.glob("*.md"))]:
        for n, line in prose_lines(path):
            for target, anchor in re.findall(r"\]\(([\w./-]*?\.md)?(?:#([\w-]+))?\)", line):
                page = (path.parent / target) if target else path
                if target and not page.is_file():
                    dead.append(f"{path.relative_to(ROOT)}:{n}: {target}")
                elif anchor and anchor not in heading_anchors(page):
                    dead.append(f"{path.relative_to(ROOT)}:{n}: {target}#{anchor}")
    assert not dead, "\n".join(dead)


# -- "planned" / "not built" statements (issue 16) -------------------------------------------
# Every sentence of the docs that calls something planned or not built must name one of these
# features, whose probe proves it is still absent from the code; when it lands, this test
# fails until the docs stop calling it planned.
NOT_BUILT: dict[str, Callable[[], bool]] = {}  # the docs call nothing planned today
# Features that exist: no "planned" sentence may name them.
BUILT = ("dashboard", "web ui", "sync", "prometheus", "opentelemetry", "cluster", "sentinel")
NOT_YET = re.compile(
    r"\b(planned|not built|not yet (built|available|implemented|supported)|coming soon"
    r"|still to come|on the roadmap|will be added)\b",
    re.IGNORECASE,
)


def prose_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of the lines outside code fences."""
    out, fenced = [], False
    for n, line in enumerate(path.read_text("utf-8").splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            out.append((n, line))
    return out


def planned_statements() -> list[tuple[str, str]]:
    found = []
    for path in [README, *sorted(DOCS.glob("*.md"))]:
        for n, line in prose_lines(path):
            if NOT_YET.search(line):
                found.append((f"{path.relative_to(ROOT)}:{n}", line))
    return found


def test_every_planned_statement_names_a_feature_still_absent() -> None:
    statements = planned_statements()
    for where, line in statements:
        lowered = line.lower().replace("_", " ")
        features = [f for f in NOT_BUILT if f in lowered]
        assert features, f"{where}: calls something planned, naming no entry of NOT_BUILT: {line}"
        for feature in features:
            assert NOT_BUILT[feature](), f"{where}: says {feature!r} is not built, but it is"
        built = [b for b in BUILT if b in lowered]
        assert not built, f"{where}: calls {built} planned, but it is built: {line}"


def test_the_planned_checker_sees_a_stale_statement(tmp_path: Path) -> None:
    stale = "## Not built yet\n\n- a web dashboard\n\nA web dashboard is planned.\n"
    (tmp_path / "x.md").write_text(stale)
    lines = [line for _n, line in prose_lines(tmp_path / "x.md") if NOT_YET.search(line)]
    assert lines == ["## Not built yet", "A web dashboard is planned."]
    assert any(b in lines[1].lower() for b in BUILT)


# -- api.md documents the public API -----------------------------------------------------------
API_ENTRY = re.compile(r"^::: ([\w.]+)\n((?:    .*\n)*)", re.MULTILINE)


def api_documented_objects() -> list[object]:
    """The objects the ``:::`` entries of docs/api.md render: the object each names, or, for a
    module, the members its ``members:`` option lists (those of its ``__all__`` when it lists
    none)."""
    import importlib

    documented: list[object] = []
    for m in API_ENTRY.finditer((DOCS / "api.md").read_text("utf-8")):
        target, options = m.group(1), m.group(2)
        module_name, _, attr = target.rpartition(".")
        try:
            obj = importlib.import_module(target)
        except ImportError:
            obj = getattr(importlib.import_module(module_name), attr)
        if not inspect.ismodule(obj):
            documented.append(obj)
            continue
        listed = re.findall(r"^ +- (\w+)$", options, re.MULTILINE)
        names = listed or list(obj.__all__)
        documented.extend(getattr(obj, n) for n in names)
    return documented


def test_api_page_documents_every_public_name() -> None:
    """docs/api.md says it lists every public class and function: each name of errands.__all__
    has a ``:::`` entry (its own, or its module's)."""
    import errands

    documented = api_documented_objects()
    missing = [
        name
        for name in errands.__all__
        if name != "__version__" and not any(getattr(errands, name) is obj for obj in documented)
    ]
    assert not missing, f"errands.__all__ names missing from docs/api.md: {missing}"
