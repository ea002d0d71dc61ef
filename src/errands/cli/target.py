"""Which Redis server and namespace a command talks to: one scheme for every entry point.

In order, the first that gives a value wins:

1. ``--redis URL`` and ``--namespace NS``;
2. the app, ``--app MODULE:ATTRIBUTE`` (the worker's own ``MODULE:ATTRIBUTE``): its pool's
   Redis and namespace;
3. the environment: ``REDIS_URL`` (what most deployments already set) and ``ERRANDS_NAMESPACE``;
   ``ERRANDS_REDIS_URL`` still works, deprecated;
4. ``redis://localhost:6379/0`` and ``errands``.

Every command says where it looks (password hidden): the worker in its start line, ``inspect``
above its tables, the dashboard when it starts.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import sysconfig
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..admin.client import Client
from ..errors import ErrandsError
from ..store.connection import connect, redact_url

if TYPE_CHECKING:
    from ..worker.pool import WorkerPool

__all__ = [
    "BAD_INPUT",
    "DEFAULT_NAMESPACE",
    "DEFAULT_URL",
    "Target",
    "add_target_options",
    "env_url",
    "load_pool",
    "refuse",
]

DEFAULT_URL = "redis://localhost:6379/0"
DEFAULT_NAMESPACE = "errands"
# what the commands' checks of their input raise (an interval overflowing: OverflowError)
BAD_INPUT = (ValueError, TypeError, OverflowError)


def refuse(exc: BaseException) -> int:
    """Invalid input: one line on stderr, ``errands: ...``, never a traceback; exit status 2."""
    print(f"errands: {exc}", file=sys.stderr)
    return 2


def add_target_options(p: argparse.ArgumentParser, *, app: bool = True) -> None:
    p.add_argument(
        "--redis",
        metavar="URL",
        default=None,
        help=f"Redis URL (default: the --app's, else $REDIS_URL, else {DEFAULT_URL})",
    )
    p.add_argument(
        "--namespace",
        metavar="NS",
        default=None,
        help="namespace (default: the --app's, else $ERRANDS_NAMESPACE, else errands)",
    )
    if app:
        p.add_argument(
            "--app",
            metavar="MODULE:ATTRIBUTE",
            default=None,
            help="take Redis and namespace from this WorkerPool (e.g. jobs:pool)",
        )


def env_url(environ: Mapping[str, str] | None = None, *, legacy_only: bool = False) -> str | None:
    """``$REDIS_URL``, else the deprecated ``$ERRANDS_REDIS_URL`` (with a note on stderr)."""
    environ = os.environ if environ is None else environ
    url, old = environ.get("REDIS_URL"), environ.get("ERRANDS_REDIS_URL")
    if old and (legacy_only or not url):
        instead = "--redis, or REDIS_URL read in your pool's code" if legacy_only else "REDIS_URL"
        print(f"errands: ERRANDS_REDIS_URL is deprecated: use {instead}", file=sys.stderr)
        return old
    return None if legacy_only else url


@dataclass
class Target:
    """A Redis server (a URL, or the client of an app's pool that has none) and a namespace;
    with ``--app``, its pool's serializer (None: the default, JSON)."""

    url: str | None
    namespace: str
    redis: Any = None
    serializer: Any = None

    @classmethod
    def resolve(cls, args: argparse.Namespace) -> Target:
        url: str | None = args.redis
        namespace: str | None = args.namespace
        redis: Any = None
        serializer: Any = None
        app = getattr(args, "app", None)
        if app:
            pool = load_pool(app)
            if url is None:
                url, redis = pool.url, None if pool.url else pool.redis
            namespace = namespace or pool.namespace
            serializer = pool.serializer
        if url is None and redis is None:
            url = env_url() or DEFAULT_URL
        namespace = namespace or os.environ.get("ERRANDS_NAMESPACE") or DEFAULT_NAMESPACE
        return cls(url, namespace, redis, serializer)

    @property
    def where(self) -> str:
        """``redis://:***@host:6379/0, namespace 'myapp'``."""
        server = redact_url(self.url) if self.url else "the app's Redis client"
        return f"{server}, namespace {self.namespace!r}"

    def client(self) -> Client:
        """A Client that owns its connection (closed by ``aclose``)."""
        client = Client(
            self.redis if self.url is None else connect(self.url), namespace=self.namespace
        )
        client._owns_client = True
        return client


def load_pool(path: str) -> WorkerPool:
    """Import ``module:attribute`` (a WorkerPool, or a callable returning one). Every way this
    can fail is one ErrandsError line: a bad path, an import error (or any exception) in the
    user's module, a missing attribute, a factory that raises, not a pool."""
    from ..typed import JobFunction
    from ..worker.pool import WorkerPool

    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module_name, sep, attr = path.partition(":")
    if module_name.endswith(".py") or "/" in module_name or os.sep in module_name:
        hint = _file_hint(module_name, attr, WorkerPool)  # (a file given for the module)
        raise ErrandsError(f"expected MODULE:ATTRIBUTE (e.g. app.jobs:pool), got {path!r}{hint}")
    if not sep or not module_name or not attr:
        head, dot, tail = path.rpartition(".")
        hint = f" (did you mean '{head}:{tail}'?)" if not sep and dot and head and tail else ""
        raise ErrandsError(f"expected MODULE:ATTRIBUTE (e.g. app.jobs:pool), got {path!r}{hint}")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ErrandsError(f"cannot import {module_name!r}: {_describe(exc)}") from exc
    try:
        obj = getattr(module, attr)
    except AttributeError:
        pools = _pools_of(module, module_name, WorkerPool)
        hint = f"its WorkerPool: {', '.join(pools)}" if pools else "it has no WorkerPool"
        raise ErrandsError(f"module {module_name!r} has no attribute {attr!r} ({hint})") from None
    if isinstance(obj, JobFunction):  # a handler, not a factory: calling it would run the job
        pools = _pools_of(module, module_name, obj.pool)
        where = f": {pools[0]}" if pools else ""
        raise ErrandsError(
            f"{path} is the job function {obj.name!r}, not a WorkerPool:"
            f" give the pool it is registered on{where}"
        )
    if not isinstance(obj, WorkerPool) and callable(obj):
        try:
            obj = obj()
        except Exception as exc:
            raise ErrandsError(f"{path}() failed: {_describe(exc)}") from exc
    if not isinstance(obj, WorkerPool):
        raise ErrandsError(f"{path} is a {type(obj).__name__}, not a WorkerPool")
    return obj


def _file_hint(file: str, attr: str, pool_type: type) -> str:
    """`` (did you mean 'app.jobs:pool'?)`` for ``app/jobs.py``: the module's dotted path (of a
    file under the current directory), with ``attr`` if given, else the WorkerPools the module
    holds (imported: errors ignored), else ``<pool variable>``."""
    rel = os.path.normpath(file[:-3] if file.endswith(".py") else file)
    if os.path.isabs(rel):
        rel = os.path.relpath(rel)
    parts = rel.replace(os.sep, "/").replace(".", "/").split("/")  # ('app.jobs.py' too)
    if not all(part.isidentifier() for part in parts):  # (outside the current directory, say)
        return " (a module's dotted path, not its file: run from the directory it is under)"
    module_name = ".".join(parts)
    if attr:
        return f" (did you mean '{module_name}:{attr}'?)"
    try:
        pools = _pools_of(importlib.import_module(module_name), module_name, pool_type)
    except Exception:
        pools = []
    guesses = " or ".join(f"'{p}'" for p in pools) or f"'{module_name}:<pool variable>'"
    return f" (did you mean {guesses}?)"


def _pools_of(module: Any, module_name: str, what: Any) -> list[str]:
    """``["jobs:pool"]``: the ``MODULE:ATTRIBUTE`` of each top-level attribute of the module
    that is ``what`` (an object), or an instance of it (a class)."""
    return [
        f"{module_name}:{name}"
        for name, value in vars(module).items()
        if (isinstance(value, what) if isinstance(what, type) else value is what)
    ]


def _describe(exc: BaseException) -> str:
    """``NameError: name 'x' is not defined (jobs.py, line 3)``: the error and where it was
    raised in the user's code (the innermost frame outside the standard library, installed
    packages and errands)."""
    if isinstance(exc, ModuleNotFoundError):
        return str(exc)
    where = ""
    if isinstance(exc, SyntaxError) and exc.filename:
        where = f" ({os.path.relpath(exc.filename)}, line {exc.lineno})"
        return f"SyntaxError: {exc.msg}{where}"
    paths = sysconfig.get_paths()
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    library = (*(paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")), package)
    for frame in traceback.extract_tb(exc.__traceback__):
        name = frame.filename
        if not name.startswith("<") and not name.startswith(library) and "-packages" not in name:
            where = f" ({os.path.relpath(name)}, line {frame.lineno})"
    return f"{type(exc).__name__}: {exc}{where}"
