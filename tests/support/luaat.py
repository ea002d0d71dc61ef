"""A hot script as an older commit had it, for the differential tests: its Lua folder read from
git (``git archive``), the script expanded as store/luasource.py expands it. The test is skipped
where the checkout holds no history of that commit (a plain copy, a shallow clone)."""

from __future__ import annotations

import shutil
import subprocess
import tarfile
from io import BytesIO
from pathlib import Path

import pytest

from errands.store import luasource

ROOT = Path(__file__).resolve().parents[2]


def lua_at(commit: str, script: str, tmp: Path) -> str:
    """``script``.lua at ``commit`` with its libs (those it never refers to left out)."""
    git = shutil.which("git")
    if git is None or not (ROOT / ".git").exists():
        pytest.skip(f"no git checkout to read {script}.lua of {commit} from")
    got = subprocess.run(
        [git, "-C", str(ROOT), "archive", commit, "src/errands/store/lua"],
        capture_output=True,
        check=False,
    )
    if got.returncode != 0:
        pytest.skip(f"commit {commit} not found")
    with tarfile.open(fileobj=BytesIO(got.stdout)) as tar:
        tar.extractall(tmp, filter="data")
    lua = tmp / "src/errands/store/lua"
    lines: list[tuple[str, bool]] = []
    luasource._expand(lua, lua / f"{script}.lua", set(), lines, in_lib=False)
    return "\n".join(luasource._unused_left_out(lines, script)) + "\n"
