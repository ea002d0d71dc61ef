"""Databases for the outbox tests: SQLite always; PostgreSQL from the self-contained server of
the ``pgserver`` wheel (a dev dependency), started once per test session, one database per test.
The machine's own PostgreSQL, if any, is never used."""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """The base URL (no driver) of a private PostgreSQL server, or skip saying why."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pgserver
    except ImportError:
        pytest.skip("no self-contained PostgreSQL: pip install pgserver (in the dev extra)")
    # a short path: the server's unix socket lives there (108 bytes at most)
    root = Path(tempfile.mkdtemp(prefix="errpg"))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            server: Any = pgserver.get_server(root, cleanup_mode="stop")
    except Exception as exc:  # pragma: no cover - depends on the machine
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"the pgserver PostgreSQL did not start: {exc}")
    try:
        yield f"postgres@/postgres?host={root}"
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


def new_pg_database(pg_server: str) -> str:
    """A fresh database on the private server; its URL without a driver (``postgres@/name?...``)."""
    import psycopg

    name = "t" + uuid.uuid4().hex[:12]
    with psycopg.connect(f"postgresql://{pg_server}", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return pg_server.replace("/postgres?", f"/{name}?", 1)


def sessions_left(base: str, wait: float = 5.0) -> list[tuple[Any, ...]]:
    """The client sessions still connected to the database of ``base`` (a URL without a driver;
    not the server's own workers, as autovacuum), after waiting up to ``wait`` seconds for them
    to go: (pid, state, backend start, last query)."""
    import psycopg

    name = base.split("/", 1)[1].split("?", 1)[0]
    query = (
        "SELECT pid, state, backend_start, query FROM pg_stat_activity"
        " WHERE datname = %s AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
    )
    deadline = time.monotonic() + wait
    with psycopg.connect(f"postgresql://{base}", autocommit=True) as conn:
        while True:
            left = conn.execute(query, (name,)).fetchall()
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.05)


@pytest.fixture(params=["sqlite", "psycopg", "asyncpg"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(sync URL, async URL) of an empty database of each kind the outbox supports. On
    PostgreSQL the test fails if a connection to its database is still open at its end (a
    connection the code under test leaked, which would otherwise surface only when the garbage
    collector finds it, as a ResourceWarning in some later test)."""
    if request.param == "sqlite":
        path = tmp_path / "app.db"
        yield f"sqlite:///{path}", f"sqlite+aiosqlite:///{path}"
        return
    base = new_pg_database(request.getfixturevalue("pg_server"))
    yield f"postgresql+psycopg://{base}", f"postgresql+{request.param}://{base}"
    left = sessions_left(base)
    assert not left, f"connections left open to the test's database: {left}"
