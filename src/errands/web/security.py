"""Who may use the dashboard, and how requests are checked before any page or action runs.

- Without authentication only loopback peers are served (403 for the rest). With basic auth or
  a bearer token configured, every request must carry valid credentials (compared in constant
  time); a token can also be exchanged for a signed session cookie at ``/login``.
- ``X-Forwarded-For`` is read only when the TCP peer is one of ``trusted_proxies``.
- Every state change is a POST carrying a CSRF token (signed, and equal to the token cookie:
  double submit), from the same origin (``Sec-Fetch-Site``/``Origin``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection

__all__ = [
    "CSRF_COOKIE",
    "DEFAULT_REDACT",
    "SESSION_COOKIE",
    "Settings",
    "authenticate",
    "client_address",
    "csrf_token_valid",
    "forwarded_https",
    "host_allowed",
    "is_loopback",
    "new_csrf_token",
    "parse_hosts",
    "presented_credentials",
    "same_origin",
    "session_cookie_value",
    "session_id",
]

# Compared with key names reduced to lower-case letters and digits ("apiKey", "API-KEY" and
# "api_key" are all "apikey"); see redact.py for how short words are matched.
DEFAULT_REDACT = (
    "password", "passwd", "pwd", "passphrase", "secret", "token", "api_key", "private_key",
    "authorization", "auth", "credential", "cookie", "session", "jwt", "bearer",
)  # fmt: skip
LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")
CSRF_COOKIE = "errands_csrf"
SESSION_COOKIE = "errands_session"
SESSION_SECONDS = 12 * 3600

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Settings:
    """The security options of one dashboard (see :func:`errands.dashboard`)."""

    basic_auth: tuple[str, str] | None = None
    token: str | None = None
    trusted_proxies: tuple[Network, ...] = ()
    redact: tuple[str, ...] = DEFAULT_REDACT
    allowed_origins: frozenset[str] = frozenset()
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    read_only: bool = False
    refresh: float = 5.0
    allowed_hosts: frozenset[str] = frozenset()

    @property
    def auth_configured(self) -> bool:
        return self.basic_auth is not None or bool(self.token)


def parse_basic_auth(value: str | tuple[str, str] | None) -> tuple[str, str] | None:
    if value is None or value == "":
        return None
    if isinstance(value, tuple):
        user, password = value
    else:
        user, sep, password = value.partition(":")
        if not sep:
            raise ValueError("basic auth must be given as 'user:password'")
    if not user or not password:
        raise ValueError("basic auth needs a non-empty user and password")
    return user, password


def parse_networks(addresses: Iterable[str]) -> tuple[Network, ...]:
    """``10.0.0.1``, ``10.0.0.0/8``, ``::1`` -> networks (a bad address raises ValueError)."""
    return tuple(ipaddress.ip_network(a.strip(), strict=False) for a in addresses if a.strip())


def _ip(host: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not host:
        return None
    try:
        address = ipaddress.ip_address(host.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_loopback(host: str | None) -> bool:
    address = _ip(host)
    return address is not None and address.is_loopback


def _trusted(host: str | None, proxies: tuple[Network, ...]) -> bool:
    address = _ip(host)
    return address is not None and any(address in net for net in proxies)


def client_address(conn: HTTPConnection, proxies: tuple[Network, ...]) -> str | None:
    """The client's address: the TCP peer, unless the peer is a trusted proxy; then the
    right-most ``X-Forwarded-For`` hop that is not itself a trusted proxy. A request relayed by
    a trusted proxy without that header has no known client (None)."""
    host = conn.client.host if conn.client else None
    if not proxies or not _trusted(host, proxies):
        return host
    hops = [h.strip() for v in conn.headers.getlist("x-forwarded-for") for h in v.split(",")]
    hops = [h for h in hops if h]
    for hop in reversed(hops):
        if not _trusted(hop, proxies):
            return hop
    return hops[0] if hops else None


def _equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def session_cookie_value(
    settings: Settings, expires: int | None = None, sid: str | None = None
) -> str:
    """A session cookie for token auth: expiry, a random session id (what ``/logout`` revokes)
    and an HMAC of both keyed by secret and token."""
    expires = expires if expires is not None else int(time.time()) + SESSION_SECONDS
    sid = sid if sid is not None else secrets.token_urlsafe(12)
    return f"{expires}.{sid}.{_session_mac(settings, expires, sid)}"


def _session_mac(settings: Settings, expires: int, sid: str) -> str:
    key = settings.secret + (settings.token or "").encode()
    return hmac.new(key, f"session:{expires}:{sid}".encode(), hashlib.sha256).hexdigest()


def session_id(settings: Settings, cookie: str | None) -> tuple[str, int] | None:
    """(session id, expiry) of a valid, unexpired session cookie (revocation not checked)."""
    if not cookie or not settings.token:
        return None
    expires, _, rest = cookie.partition(".")
    sid, _, mac = rest.partition(".")
    if not expires.isascii() or not expires.isdigit() or int(expires) < time.time() or not sid:
        return None
    return (sid, int(expires)) if _equal(mac, _session_mac(settings, int(expires), sid)) else None


def _basic_valid(settings: Settings, credentials: str) -> bool:
    if settings.basic_auth is None:
        return False
    try:
        decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return False
    user, _, password = decoded.partition(":")
    user_ok = _equal(user, settings.basic_auth[0])
    password_ok = _equal(password, settings.basic_auth[1])
    return user_ok & password_ok


def presented_credentials(conn: HTTPConnection) -> bool:
    """The request carries a basic or bearer ``Authorization`` header (a guess to throttle)."""
    scheme = conn.headers.get("authorization", "").partition(" ")[0].lower()
    return scheme in ("basic", "bearer")


def authenticate(conn: HTTPConnection, settings: Settings) -> str | None:
    """``basic`` or ``bearer`` when the request carries valid credentials in its header,
    ``session`` when it carries a well-signed session cookie (whose revocation the caller
    checks: see sessions.py)."""
    scheme, _, credentials = conn.headers.get("authorization", "").partition(" ")
    scheme = scheme.lower()
    if scheme == "basic" and _basic_valid(settings, credentials.strip()):
        return "basic"
    if scheme == "bearer" and settings.token and _equal(credentials.strip(), settings.token):
        return "bearer"
    if session_id(settings, conn.cookies.get(SESSION_COOKIE)) is not None:
        return "session"
    return None


def _sign(settings: Settings, nonce: str) -> str:
    return hmac.new(settings.secret, f"csrf:{nonce}".encode(), hashlib.sha256).hexdigest()


def new_csrf_token(settings: Settings) -> str:
    nonce = secrets.token_urlsafe(18)
    return f"{nonce}.{_sign(settings, nonce)}"


def csrf_token_valid(settings: Settings, token: str | None) -> bool:
    """Signed by this dashboard's secret (a cookie planted by a sibling site is not)."""
    if not token:
        return False
    nonce, _, mac = token.partition(".")
    return bool(nonce) and _equal(mac, _sign(settings, nonce))


def same_origin(conn: HTTPConnection, settings: Settings) -> bool:
    """False for a request a browser marked as cross-site (``Sec-Fetch-Site``) or whose
    ``Origin`` is neither this host nor one of ``allowed_origins``. Requests with neither
    header (curl, scripts) pass here; they still need the CSRF token."""
    site = conn.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = conn.headers.get("origin")
    if origin is None:
        return True
    if origin in settings.allowed_origins:
        return True
    try:
        netloc = urlsplit(origin).netloc.lower()
    except ValueError:
        return False
    if not netloc:
        return False  # "null" (sandboxed frames, some redirects)
    hosts = {conn.headers.get("host", "").lower()}
    peer = conn.client.host if conn.client else None
    if _trusted(peer, settings.trusted_proxies):
        hosts.add(conn.headers.get("x-forwarded-host", "").split(",")[0].strip().lower())
    return netloc in hosts - {""}


def _hostname(host_header: str) -> str:
    """``Example.COM:5040`` -> ``example.com``; ``[::1]:5040`` -> ``::1``."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    if host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


def host_allowed(conn: HTTPConnection, settings: Settings) -> bool:
    """The ``Host`` header names this dashboard: one of ``allowed_hosts`` when configured,
    else (without credentials) a loopback name or address. This refuses DNS rebinding: a
    page of ``http://evil.example:5040`` whose name was re-pointed at 127.0.0.1 sends
    ``Host: evil.example:5040``. With credentials and no ``allowed_hosts`` any host passes."""
    host = _hostname(conn.headers.get("host", ""))
    if settings.allowed_hosts:
        return host in settings.allowed_hosts or any(
            a.startswith("*.") and host.endswith(a[1:]) for a in settings.allowed_hosts
        )
    if settings.auth_configured:
        return True
    return host in LOOPBACK_NAMES or host.endswith(".localhost") or is_loopback(host)


def parse_hosts(hosts: Iterable[str]) -> frozenset[str]:
    """``admin.example.com``, ``*.example.com``, ``[::1]`` -> normalised host names."""
    return frozenset(_hostname(h) for h in hosts if h.strip())


def forwarded_https(conn: HTTPConnection, settings: Settings) -> bool:
    """The client reached us over HTTPS: directly, or through a trusted proxy that says so
    with ``X-Forwarded-Proto: https`` (or ``Forwarded: proto=https``)."""
    if conn.url.scheme == "https":
        return True
    peer = conn.client.host if conn.client else None
    if not _trusted(peer, settings.trusted_proxies):
        return False
    proto = conn.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    forwarded = conn.headers.get("forwarded", "").split(",")[0].lower().replace(" ", "")
    return proto == "https" or "proto=https" in forwarded.split(";")
