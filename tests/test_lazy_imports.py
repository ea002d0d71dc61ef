"""``import errands`` does not load what a process that only enqueues or works jobs never uses:
the optional extras (dashboard, Prometheus, OpenTelemetry contrib, Django) and the admin client,
the sync wrappers, the schedule listing and the CLI, whose public names are imported on first
access (errands/__init__.py ``__getattr__``). What is imported is checked, never a timing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import errands

# third-party packages of the optional extras (top-level names)
OPTIONAL_PACKAGES = {"starlette", "jinja2", "markupsafe", "prometheus_client", "uvicorn", "django"}
OPTIONAL_PACKAGES |= {"anyio", "multipart", "itsdangerous", "croniter", "pytest_asyncio"}
# errands modules behind a lazily imported public name, or only used by the CLI / extras
LAZY_MODULES = {
    "errands.admin.client",
    "errands.sync",
    "errands.periodic.listing",
    "errands.web",
    "errands.cli",
    "errands.contrib",
    "errands.testing",
}

_PROBE = """
import sys
import errands
for name in sorted(sys.modules):
    print(name)
"""


def _modules_after_import() -> set[str]:
    # the child imports the errands this test imports (this checkout's src/, not an installed one)
    src = str(Path(errands.__file__).resolve().parent.parent)
    path = os.pathsep.join([src, *filter(None, [os.environ.get("PYTHONPATH")])])
    env = {**os.environ, "PYTHONPATH": path}
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env=env,
    )
    return set(proc.stdout.split())


def test_import_errands_leaves_optional_and_lazy_modules_unloaded() -> None:
    loaded = _modules_after_import()
    assert "errands.enqueuer" in loaded and "errands.worker.pool" in loaded  # the probe works
    third_party = sorted(m for m in loaded if m.split(".")[0] in OPTIONAL_PACKAGES)
    assert not third_party, f"import errands loaded optional packages: {third_party}"
    ours = sorted(m for m in loaded if any(m == p or m.startswith(p + ".") for p in LAZY_MODULES))
    assert not ours, f"import errands loaded modules meant to be imported on first use: {ours}"


def test_lazy_names_are_the_defining_modules_objects() -> None:
    from errands.admin.client import Client
    from errands.periodic.listing import ScheduleInfo
    from errands.sync import SyncClient, SyncEnqueuer

    assert errands.Client is Client
    assert errands.ScheduleInfo is ScheduleInfo
    assert errands.SyncClient is SyncClient
    assert errands.SyncEnqueuer is SyncEnqueuer


def test_dir_lists_every_public_name() -> None:
    missing = sorted(set(errands.__all__) - set(dir(errands)))
    assert not missing, f"names of errands.__all__ missing from dir(errands): {missing}"
