"""``errands.dashboard(...)``: the Starlette app of the web dashboard."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path

from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from ..admin.client import Client
from .actions import Actions
from .guard import Guard
from .redact import Redactor
from .render import Renderer
from .security import DEFAULT_REDACT, Settings, parse_basic_auth, parse_hosts, parse_networks
from .sessions import Sessions
from .throttle import Throttle
from .views import Views

__all__ = ["dashboard"]

STATIC = Path(__file__).resolve().parent / "static"


def dashboard(
    redis_or_client: Client | Redis | str,
    *,
    namespace: str = "errands",
    basic_auth: str | tuple[str, str] | None = None,
    token: str | None = None,
    trusted_proxies: Iterable[str] = (),
    redact: Iterable[str] | None = None,
    allowed_origins: Iterable[str] = (),
    allowed_hosts: Iterable[str] = (),
    secret: str | bytes | None = None,
    read_only: bool = False,
    refresh: float = 5.0,
    routes: Sequence[BaseRoute] = (),
) -> Starlette:
    """The web dashboard as an ASGI app: serve it, or mount it into your app::

        app.mount("/jobs", errands.dashboard(redis, namespace="myapp", token=TOKEN))

    ``redis_or_client``: a :class:`Client` (its namespace is used), an asyncio Redis client or
    a Redis URL. Security options: without ``basic_auth`` (``"user:password"``) or ``token``
    only loopback clients are served; ``trusted_proxies`` (addresses or networks) are the only
    peers whose ``X-Forwarded-For`` (and ``X-Forwarded-Proto``) is believed; ``redact`` lists
    the key words whose values are hidden (default ``DEFAULT_REDACT``; ``()`` for none; the
    passwords of URLs are masked regardless); ``allowed_origins`` adds origins
    (``https://admin.example.com``) accepted on POSTs besides the request's own host;
    ``allowed_hosts`` (``admin.example.com``, ``*.example.com``) are the only names accepted in
    the ``Host`` header (default: any with credentials; without, loopback names and addresses
    only, which refuses DNS rebinding); ``secret`` signs CSRF tokens and sessions (random per
    process by default: give one when several processes serve the dashboard); ``read_only``
    refuses every action; ``refresh`` is the live-refresh period in seconds (0 turns it off).
    ``routes`` are added to the app behind the same guard (the hook for extra endpoints such
    as ``/metrics``).
    """
    client, owned = _client(redis_or_client, namespace)
    settings = Settings(
        basic_auth=parse_basic_auth(basic_auth),
        token=token or None,
        trusted_proxies=parse_networks(trusted_proxies),
        redact=tuple(DEFAULT_REDACT if redact is None else redact),
        allowed_origins=frozenset(o.rstrip("/") for o in allowed_origins),
        allowed_hosts=parse_hosts(allowed_hosts),
        secret=_secret(secret),
        read_only=read_only,
        refresh=max(0.0, float(refresh)),
    )
    return _app(client, owned, settings, routes)


def _app(client: Client, owned: bool, settings: Settings, routes: Sequence[BaseRoute]) -> Starlette:
    """The Starlette app of :func:`dashboard`: its pages and actions, ``routes``, all behind the
    guard; closes ``client`` at shutdown when it made it (``owned``)."""
    renderer = Renderer(settings, now=client.clock.now)
    redactor = Redactor(settings.redact)
    throttle = Throttle(client.clock.now)
    sessions = Sessions(client)
    all_routes: list[BaseRoute] = [
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
        Route("/favicon.ico", _favicon, methods=["GET"]),  # asked for by JSON pages too
        *Views(client, renderer, redactor).routes(),
        *Actions(client, renderer, settings, throttle, sessions).routes(),
        *routes,
    ]

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        if owned:
            await client.aclose()

    async def not_found(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 404
        message = "Method not allowed." if status == 405 else "No such page."
        return renderer.error(request, status, message)

    app = Starlette(
        routes=all_routes,
        exception_handlers={404: not_found, 405: not_found},
        middleware=[
            Middleware(
                Guard, settings=settings, renderer=renderer, throttle=throttle, sessions=sessions
            )
        ],
        lifespan=lifespan,
    )
    app.state.client = client
    app.state.settings = settings
    return app


async def _favicon(_request: Request) -> Response:
    return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")


def _client(redis_or_client: Client | Redis | str, namespace: str) -> tuple[Client, bool]:
    """The Client to use, and whether the dashboard owns (and closes) it."""
    if isinstance(redis_or_client, Client):
        return redis_or_client, False
    if isinstance(redis_or_client, str):
        return Client.from_url(redis_or_client, namespace=namespace), True
    return Client(redis_or_client, namespace=namespace), False


def _secret(secret: str | bytes | None) -> bytes:
    if secret is None or secret == b"" or secret == "":
        return os.urandom(32)
    return secret.encode() if isinstance(secret, str) else secret
