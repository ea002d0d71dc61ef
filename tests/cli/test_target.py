"""One configuration for every entry point (issue 16): ``--redis``/``--namespace``, else the
app's pool (``--app jobs:pool``), else ``$REDIS_URL``/``$ERRANDS_NAMESPACE`` (the deprecated
``$ERRANDS_REDIS_URL`` still works, with a note), else the defaults; each command says which
server (password hidden) and namespace it uses. Bad apps and URLs exit 2 with one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from errands import Enqueuer, WorkerPool
from errands.store.devserver import RedisServer
from tests.support.procs import ROOT, subprocess_env

JOBS = """
import os
from errands import WorkerPool

pool = WorkerPool.from_url(os.environ["APP_REDIS_URL"], namespace="fromapp")


@pool.job("send_email")
async def send_email(address: str) -> None: ...
"""

# a pool that is never started: its URL is not reached
POOL = """
from errands import WorkerPool

pool = WorkerPool.from_url("redis://127.0.0.1:9/0")


@pool.job()
async def send_email(address: str) -> None: ...
"""


def run(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = subprocess_env(env)
    for name in ("REDIS_URL", "ERRANDS_NAMESPACE", "ERRANDS_REDIS_URL"):
        if name not in env:
            base.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "errands", *args],
        cwd=cwd,
        env=base,
        capture_output=True,
        text=True,
        timeout=60,
    )


def with_password(url: str) -> str:
    """The same server with a password in the URL (the test server ignores it... unless it
    has none set, where AUTH fails: so only used where nothing connects)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, "user:hunter2@" + parts.netloc, parts.path, "", ""))


@pytest.fixture
async def queued(redis_url: str, namespace: str) -> str:
    """One job queued in ``namespace`` and one in ``fromapp-<namespace>``."""
    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        await enqueuer.enqueue("in_env_namespace")
    return namespace


def first_line(out: str) -> str:
    return out.splitlines()[0]


async def test_redis_url_and_errands_namespace_from_the_environment(
    tmp_path: Path, redis_url: str, queued: str
) -> None:
    r = run(tmp_path, "inspect", "queues", REDIS_URL=redis_url, ERRANDS_NAMESPACE=queued)
    assert r.returncode == 0, r.stderr
    assert first_line(r.stdout) == f"{redis_url}, namespace {queued!r}"
    row = r.stdout.splitlines()[2]
    assert row.split()[0] == "in_env_namespace" and row.split()[-1] == "NO"  # no pool serves it
    assert r.stdout.splitlines()[-1] == "no running pool serves: in_env_namespace"
    assert r.stderr == ""


async def test_the_deprecated_errands_redis_url_still_works_with_a_note(
    tmp_path: Path, redis_url: str, queued: str
) -> None:
    r = run(tmp_path, "inspect", "queues", "--namespace", queued, ERRANDS_REDIS_URL=redis_url)
    assert r.returncode == 0, r.stderr
    assert "in_env_namespace" in r.stdout
    assert "ERRANDS_REDIS_URL is deprecated: use REDIS_URL" in r.stderr


async def test_app_gives_redis_and_namespace_and_flags_win(
    tmp_path: Path, redis_url: str, queued: str
) -> None:
    (tmp_path / "jobs.py").write_text(JOBS)
    async with Enqueuer.from_url(redis_url, namespace="fromapp") as enqueuer:
        await enqueuer.enqueue("send_email", {"address": "a@example.com"})
    # REDIS_URL points nowhere: the app's pool is what counts
    nowhere = "redis://127.0.0.1:9/0"
    r = run(
        tmp_path,
        "inspect",
        "queues",
        "--app",
        "jobs:pool",
        APP_REDIS_URL=redis_url,
        REDIS_URL=nowhere,
        ERRANDS_NAMESPACE="ignored",
    )
    assert r.returncode == 0, r.stderr
    assert first_line(r.stdout) == f"{redis_url}, namespace 'fromapp'"
    assert "send_email" in r.stdout
    # --namespace beats the app's
    r = run(
        tmp_path,
        "inspect",
        "queues",
        "--app",
        "jobs:pool",
        "--namespace",
        queued,
        APP_REDIS_URL=redis_url,
    )
    assert first_line(r.stdout) == f"{redis_url}, namespace {queued!r}"
    assert "in_env_namespace" in r.stdout
    # --redis beats the app's
    r = run(
        tmp_path,
        "schedules",
        "list",
        "--app",
        "jobs:pool",
        "--redis",
        nowhere,
        APP_REDIS_URL=redis_url,
    )
    assert r.returncode == 2 and "cannot reach Redis at redis://127.0.0.1:9/0" in r.stderr


async def test_an_empty_namespace_names_the_ones_the_server_has(tmp_path: Path) -> None:
    with RedisServer() as server:  # its own server: the session's has many test namespaces
        async with Enqueuer.from_url(server.url, namespace="shop", strict=None) as enqueuer:
            await enqueuer.enqueue("send_email")
        r = run(tmp_path, "inspect", "queues", REDIS_URL=server.url)  # namespace 'errands'
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        f"{server.url}, namespace 'errands'",
        "no job names in namespace 'errands'; namespaces on this server: shop "
        "(use --namespace or --app)",
    ]


async def test_unserved_names_name_the_namespace_whose_pools_serve_them(tmp_path: Path) -> None:
    """Jobs enqueued without the pools' namespace: inspect says which namespace serves them."""
    with RedisServer() as server:
        pool = WorkerPool.from_url(server.url, namespace="shop")

        @pool.job()
        async def send_email() -> None: ...

        async with pool, Enqueuer.from_url(server.url, strict=None) as enqueuer:
            await enqueuer.enqueue("send_email")  # namespace 'errands'
            r = run(tmp_path, "inspect", "queues", REDIS_URL=server.url)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == (
        "no running pool serves: send_email; pools of namespace 'shop' serve send_email"
    ), r.stdout


def test_the_worker_says_where_and_takes_the_deprecated_url_with_a_note(
    tmp_path: Path, redis_url: str, namespace: str
) -> None:
    (tmp_path / "jobs.py").write_text(JOBS)
    r = run(
        tmp_path,
        "worker",
        "jobs:pool",
        "--burst",
        "--namespace",
        namespace,
        APP_REDIS_URL="redis://127.0.0.1:9/0",
        ERRANDS_REDIS_URL=redis_url,
    )
    assert r.returncode == 0, r.stderr
    assert f"Redis {redis_url}, namespace {namespace!r}" in r.stderr
    assert (
        "ERRANDS_REDIS_URL is deprecated: use --redis, or REDIS_URL read in your pool" in r.stderr
    )
    assert "started: 1 job type," in r.stderr


@pytest.mark.parametrize(
    ("source", "app", "message"),
    [
        ("x = 1\n", "jobs", "expected MODULE:ATTRIBUTE (e.g. app.jobs:pool), got 'jobs'"),
        ("x = 1\n", "a.jobs.pool", "got 'a.jobs.pool' (did you mean 'a.jobs:pool'?)"),
        # a file given for the module: its dotted path, and the pools it holds when it has
        # some ('jobs.py' gave "did you mean 'jobs:py'?")
        (POOL, "jobs.py", "got 'jobs.py' (did you mean 'jobs:pool'?)"),
        ("x = 1\n", "jobs.py", "got 'jobs.py' (did you mean 'jobs:<pool variable>'?)"),
        ("pool = (\n", "./jobs.py", "(did you mean 'jobs:<pool variable>'?)"),
        ("x = 1\n", "app/jobs.py", "got 'app/jobs.py' (did you mean 'app.jobs:<pool variable>'?)"),
        ("x = 1\n", "app/jobs", "(did you mean 'app.jobs:<pool variable>'?)"),
        (POOL, "app/jobs.py:pool", "got 'app/jobs.py:pool' (did you mean 'app.jobs:pool'?)"),
        ("x = 1\n", "../jobs.py", "(a module's dotted path, not its file: run from the directory"),
        ("x = 1\n", "jobs:pool", "module 'jobs' has no attribute 'pool' (it has no WorkerPool)"),
        (POOL, "jobs:pol", "module 'jobs' has no attribute 'pol' (its WorkerPool: jobs:pool)"),
        (
            POOL,
            "jobs:send_email",
            "jobs:send_email is the job function 'send_email', not a WorkerPool: give the pool"
            " it is registered on: jobs:pool",
        ),
        ("x = 1\n", "nosuchmodule:pool", "cannot import 'nosuchmodule': No module named"),
        ("x = 1\n", "jobs:x", "jobs:x is a int, not a WorkerPool"),
        ("import requests_nope\n", "jobs:pool", "No module named 'requests_nope'"),
        ("pool = undefined_name\n", "jobs:pool", "NameError: name 'undefined_name' is not"),
        ("pool = (\n", "jobs:pool", "SyntaxError: '(' was never closed (jobs.py, line 1)"),
        (
            "import os\npool = os.environ['NOPE']\n",
            "jobs:pool",
            "KeyError: 'NOPE' (jobs.py, line 2)",
        ),
        (
            "def pool():\n    raise RuntimeError('boom')\n",
            "jobs:pool",
            "jobs:pool() failed: RuntimeError: boom (jobs.py, line 2)",
        ),
    ],
)
@pytest.mark.parametrize("command", [("worker",), ("inspect", "queues", "--app")])
def test_a_bad_app_exits_2_with_one_line(
    tmp_path: Path, redis_url: str, source: str, app: str, message: str, command: tuple[str, ...]
) -> None:
    (tmp_path / "jobs.py").write_text(source)
    r = run(tmp_path, *command, app, "--redis", redis_url)
    assert r.returncode == 2, r
    assert r.stderr.startswith("errands: ") and message in r.stderr, r.stderr
    assert len(r.stderr.splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr


@pytest.mark.parametrize(
    "command", [("inspect", "queues"), ("worker", "tests.support.apps.single:pool")]
)
def test_a_bad_database_exits_2_with_one_line(redis_url: str, command: tuple[str, ...]) -> None:
    out_of_range = redis_url.rsplit("/", 1)[0] + "/999"
    not_a_number = redis_url.rsplit("/", 1)[0] + "/zero"
    for url, message in (
        (out_of_range, f"cannot use Redis at {out_of_range}: DB index is out of range"),
        (not_a_number, "the database must be a number, e.g. /0, not 'zero'"),
    ):
        r = run(ROOT, *command, "--redis", url)
        assert r.returncode == 2, r
        assert r.stderr.startswith("errands: ") and message in r.stderr, r.stderr
        assert "Traceback" not in r.stderr, r.stderr


def test_a_file_in_a_package_given_for_the_app_names_the_pools_of_its_module(
    tmp_path: Path, redis_url: str
) -> None:
    """``app/jobs.py`` gave "did you mean 'app/jobs:py'?"."""
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__init__.py").write_text("")
    (tmp_path / "app" / "jobs.py").write_text(
        POOL + '\nother = WorkerPool.from_url("redis://127.0.0.1:9/0")\n'
    )
    r = run(tmp_path, "worker", "app/jobs.py", "--redis", redis_url)
    assert r.returncode == 2, r
    assert "(did you mean 'app.jobs:pool' or 'app.jobs:other'?)" in r.stderr, r.stderr
    assert len(r.stderr.splitlines()) == 1, r.stderr
