"""The ASGI middleware in front of every route of the dashboard: network and credential checks,
CSRF and same-origin checks on POST, security headers on every response, and a generic error
page (logged server-side, no traceback to the client) for anything that goes wrong."""

from __future__ import annotations

import hmac
import logging
import re
from typing import Any
from urllib.parse import parse_qsl

import orjson
from redis.exceptions import ResponseError
from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..store.connection import REDIS_ERRORS
from .render import Renderer, cookie_header, route_path
from .security import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    Settings,
    authenticate,
    client_address,
    csrf_token_valid,
    forwarded_https,
    host_allowed,
    is_loopback,
    new_csrf_token,
    presented_credentials,
    same_origin,
    session_id,
)
from .sessions import Sessions
from .throttle import Throttle

__all__ = ["SECURITY_HEADERS", "Guard"]

log = logging.getLogger("errands.dashboard")

MAX_BODY = 64 * 1024
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
# Referrer-Policy must not be no-referrer: browsers then send "Origin: null" with form POSTs.
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
}
PUBLIC = ("/static/", "/login")


_KEY = re.compile(r"errands:\{[^}\s]*\}:[^\s)]+")


def wrong_type(exc: Exception) -> str | None:
    """The page's message for a Redis key of another type than errands writes (a WRONGTYPE
    error: the key was written by something else), naming the key when Redis's error does."""
    if not isinstance(exc, ResponseError) or "WRONGTYPE" not in str(exc):
        return None
    keys = sorted(set(_KEY.findall(str(exc))))
    which = f"Redis key {', '.join(keys)} holds" if keys else "A Redis key of this namespace holds"
    return f"{which} another type than errands writes (WRONGTYPE): details logged."


class Refused(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


class Guard:
    def __init__(
        self,
        app: ASGIApp,
        settings: Settings,
        renderer: Renderer,
        throttle: Throttle,
        sessions: Sessions,
    ) -> None:
        self.app = app
        self.settings = settings
        self.renderer = renderer
        self.throttle = throttle
        self.sessions = sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 1008})
            return
        conn = HTTPConnection(scope)
        state = scope.setdefault("state", {})
        state["https"] = forwarded_https(conn, self.settings)
        cookie = conn.cookies.get(CSRF_COOKIE)
        fresh = not csrf_token_valid(self.settings, cookie)
        state["csrf"] = new_csrf_token(self.settings) if fresh else cookie
        started = refused = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
                if "cache-control" not in headers:
                    headers["cache-control"] = "no-store"
                if fresh and not refused:
                    headers.append("set-cookie", cookie_header(conn, CSRF_COOKIE, state["csrf"]))
            await send(message)

        try:
            receive = await self._gate(conn, receive)
            await self.app(scope, receive, send_with_headers)
        except Refused as refusal:
            # no cookie for a refused rebinding page or guesser (the sign-in page needs one)
            refused = refusal.status != 401
            response = self._refusal(conn, refusal)
            await response(scope, receive, send_with_headers)
        except REDIS_ERRORS as exc:
            log.warning("dashboard: Redis unavailable on %s: %s", route_path(conn), exc)
            if not started:
                response = self.renderer.error(conn, 503, "Redis is unavailable; retry shortly.")
                await response(scope, receive, send_with_headers)
        except Exception as exc:
            log.exception("dashboard: error on %s %s", scope.get("method"), route_path(conn))
            if not started:
                message = wrong_type(exc) or "Internal error (details logged)."
                response = self.renderer.error(conn, 500, message)
                await response(scope, receive, send_with_headers)

    def _refusal(self, conn: HTTPConnection, refusal: Refused) -> Response:
        if refusal.status == 401:
            response = self.renderer.unauthorized(conn)
        else:
            response = self.renderer.error(conn, refusal.status, refusal.message)
        response.headers.update(refusal.headers)
        return response

    async def _user(self, conn: HTTPConnection, path: str, peer: str | None) -> str | None:
        """Who the request authenticates as; throttled guessing gets 429."""
        s = self.settings
        guessing = presented_credentials(conn) or (
            path == "/login" and conn.scope["method"] == "POST"
        )
        if guessing:
            wait = self.throttle.retry_after(peer)
            if wait > 0:
                log.warning("dashboard: sign-in attempts from %s throttled", peer)
                raise Refused(
                    429,
                    "Too many failed sign-in attempts: try again later.",
                    {"retry-after": str(max(1, round(wait)))},
                )
        user = authenticate(conn, s)
        if user is None and presented_credentials(conn):
            self.throttle.failed(peer)
        if user == "session":
            sid = session_id(s, conn.cookies.get(SESSION_COOKIE))
            if sid is None or await self.sessions.revoked(sid[0]):
                user = None
        return user

    async def _gate(self, conn: HTTPConnection, receive: Receive) -> Receive:
        """Raise Refused, or return the receive callable the app should read the body from."""
        s = self.settings
        path = route_path(conn)
        peer = client_address(conn, s.trusted_proxies)
        conn.state.peer = peer
        if not host_allowed(conn, s):
            log.warning("dashboard: refused %s for host %r", path, conn.headers.get("host"))
            raise Refused(
                403,
                "This host name is not allowed (DNS rebinding protection): open the dashboard "
                "as localhost or 127.0.0.1, or add the name to allowed_hosts.",
            )
        conn.state.user = await self._user(conn, path, peer) if s.auth_configured else None
        if not s.auth_configured and not _direct_loopback(conn):
            log.warning("dashboard: refused %s from %s (not loopback, no auth)", path, peer)
            raise Refused(
                403,
                "This dashboard serves loopback clients only: configure a token or basic auth "
                "to open it to other hosts.",
            )
        public = path.startswith(PUBLIC[0]) or path == PUBLIC[1]
        if s.auth_configured and conn.state.user is None and not public:
            raise Refused(401, "Authentication required.")
        method = conn.scope["method"]
        if method in ("GET", "HEAD"):
            return receive
        if method != "POST":
            raise Refused(405, "Method not allowed.")
        if not same_origin(conn, s):
            log.warning("dashboard: refused cross-site POST %s from %s", path, peer)
            raise Refused(403, "Cross-site request refused.")
        body = await _read_body(receive)
        form = _parse_form(conn, body)
        token = conn.headers.get("x-csrf-token") or form.get("csrf", "")
        cookie = conn.cookies.get(CSRF_COOKIE) or ""
        if not (
            csrf_token_valid(s, cookie) and hmac.compare_digest(token.encode(), cookie.encode())
        ):
            raise Refused(403, "Missing or invalid CSRF token: reload the page and try again.")
        if s.read_only and path not in ("/login", "/logout"):
            raise Refused(403, "This dashboard is read-only.")
        conn.state.form = form
        return _replay(body, receive)


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise Refused(400, "Client disconnected.")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise Refused(413, "Request body too large.")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _parse_form(conn: HTTPConnection, body: bytes) -> dict[str, str]:
    """URL-encoded form fields, or the top-level string/number fields of a JSON object."""
    ctype = conn.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        if ctype == "application/json":
            data: Any = orjson.loads(body) if body else {}
            if not isinstance(data, dict):
                raise Refused(400, "Expected a JSON object.")
            return {str(k): v if isinstance(v, str) else orjson.dumps(v).decode()
                    for k, v in data.items()}  # fmt: skip
        if ctype in ("", "application/x-www-form-urlencoded"):
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
            form = dict(pairs)
            if "ids" in form:  # the one repeated field (bulk selections): all its values
                form["ids"] = "\n".join(v for k, v in pairs if k == "ids")
            return form
    except (orjson.JSONDecodeError, UnicodeDecodeError):
        raise Refused(400, "Malformed request body.") from None
    raise Refused(415, "Send application/x-www-form-urlencoded or application/json.")


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


_FORWARDING = ("x-forwarded-for", "x-real-ip", "forwarded")


def _direct_loopback(conn: HTTPConnection) -> bool:
    """The no-auth exemption: only a client ON this host, talking to us directly. A relayed
    request (any forwarding header) must authenticate: its forwarded address may be forged by
    a host inside a trusted-proxy range."""
    tcp_peer = conn.client.host if conn.client else None
    return is_loopback(tcp_peer) and not any(h in conn.headers for h in _FORWARDING)
