"""SQLAlchemy and Django are optional: ``import errands`` (and its worker, Client and CLI) loads
neither."""

from __future__ import annotations

import subprocess
import sys


def test_import_errands_loads_no_orm() -> None:
    code = (
        "import sys, errands, errands.cli, errands.admin.client, errands.worker.pool; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'sqlalchemy', 'django'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
