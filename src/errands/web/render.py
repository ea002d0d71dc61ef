"""Server-side rendering: the Jinja2 environment (autoescaped), filters, flash messages, JSON
responses, the throughput chart, and the error pages (which never show a traceback)."""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import orjson
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup
from starlette.requests import HTTPConnection
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from ..admin.jobinfo import Page
from .limitwords import limit_words
from .messages import FLASH_MOST
from .nav import NAV
from .security import Settings

__all__ = ["Renderer", "chart", "jsonable", "root_of", "route_path"]

HERE = Path(__file__).resolve().parent
FLASH_COOKIE = "errands_flash"
# Characters that reorder or hide text (bidi overrides and isolates, marks, zero-width
# joiners...): shown as visible escapes such as <U+202E>, never applied
INVISIBLE = re.compile("[\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")


def visible(text: str) -> str:
    """``"abc\u202edef"`` -> ``"abc<U+202E>def"``."""
    return INVISIBLE.sub(lambda m: f"<U+{ord(m.group()):04X}>", text)


def _finalize(value: Any) -> Any:
    """Every ``{{ ... }}`` output of a template passes here before it is escaped."""
    if isinstance(value, str) and not isinstance(value, Markup):
        return visible(value)
    return value


def root_of(conn: HTTPConnection) -> str:
    """Where the dashboard is mounted ('' when it is the whole app)."""
    return str(conn.scope.get("root_path", "")).rstrip("/")


def route_path(conn: HTTPConnection) -> str:
    """The request path below the mount point."""
    path: str = conn.scope["path"]
    root = root_of(conn)
    if root and path.startswith(root + "/"):
        return path[len(root) :]
    return "/" if root and path == root else path


def is_api(conn: HTTPConnection) -> bool:
    path = route_path(conn)
    return path == "/api" or path.startswith("/api/")


def cookie_header(conn: HTTPConnection, name: str, value: str, max_age: int | None = None) -> str:
    """A ``Set-Cookie`` value: HttpOnly, SameSite=Strict, scoped to the mount point."""
    cookie: SimpleCookie = SimpleCookie()
    cookie[name] = value
    morsel = cookie[name]
    morsel["path"] = root_of(conn) or "/"
    morsel["httponly"] = True
    morsel["samesite"] = "Strict"
    if max_age is not None:
        morsel["max-age"] = max_age
    if conn.scope.get("state", {}).get("https", conn.url.scheme == "https"):
        morsel["secure"] = True
    return morsel.OutputString()


def _dumps(value: Any, indent: bool = False) -> str:
    option = orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS if indent else 0
    try:
        return orjson.dumps(value, default=_default, option=option).decode()
    except TypeError:
        return repr(value)


def _default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if isinstance(value, timedelta):  # the ``per`` of a Rate limit
        return value.total_seconds()
    raise TypeError


def jsonable(value: Any) -> Any:
    """Pages, dataclasses (JobInfo with its attempts and duration...) as plain JSON data."""
    if isinstance(value, Page):
        items = [jsonable(i) for i in value.items]
        return {"items": items, "total": value.total, "page": value.page, "pages": value.pages}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
        for extra in ("attempts", "duration"):
            if hasattr(value, extra):
                out[extra] = getattr(value, extra)
        return out
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def chart(points: list[tuple[float, int, int]], width: int = 600, height: int = 120) -> Any:
    """Bars (one per minute) for the throughput SVG; sizes in viewBox units."""
    top = max([p[1] for p in points] + [1])
    step = width / max(1, len(points))
    bars = []
    for i, (minute, ended, died) in enumerate(points):
        h = round(ended / top * (height - 4), 1)
        d = round(min(died, ended or died) / top * (height - 4), 1) if died else 0.0
        label = datetime.fromtimestamp(minute, UTC).strftime("%H:%M")
        title = f"{label} UTC: {ended} ended, {died} died"
        bars.append({"x": round(i * step, 1), "w": round(step - 1, 1), "h": h, "d": d,
                     "title": title})  # fmt: skip
    first = datetime.fromtimestamp(points[0][0], UTC).strftime("%H:%M") if points else ""
    return {"bars": bars, "top": top, "width": width, "height": height, "first": first,
            "total": sum(p[1] for p in points), "died": sum(p[2] for p in points)}  # fmt: skip


class Renderer:
    def __init__(self, settings: Settings, now: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.now = now
        self.env = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            finalize=_finalize,
        )
        self.env.filters.update(
            ts=_ts, ago=self.ago, dur=_duration, pretty=_pretty, brief=_brief, q=_q
        )
        self.env.filters["limit"] = limit_words

    def ago(self, epoch: Any) -> str:
        if (epoch := _seconds(epoch)) is None:
            return "-"
        delta = self.now() - epoch
        text = _span(abs(delta))
        return f"{text} ago" if delta >= 0 else f"in {text}"

    def page(
        self, conn: HTTPConnection, template: str, status_code: int = 200, **context: Any
    ) -> Response:
        flash = conn.cookies.get(FLASH_COOKIE)
        level, _, message = unquote(flash or "").partition("|")
        context.setdefault("active", "")
        context.setdefault("refresh", self.settings.refresh)
        context.setdefault("retry", 0)
        html = self.env.get_template(template).render(
            root=root_of(conn),
            csrf=getattr(conn.state, "csrf", ""),
            user=getattr(conn.state, "user", None),
            read_only=self.settings.read_only,
            token_login=bool(self.settings.token),
            flash={"level": level, "message": message} if message else None,
            nav=NAV,
            **context,
        )
        response = HTMLResponse(html, status_code=status_code)
        if flash is not None:
            response.headers.append("set-cookie", cookie_header(conn, FLASH_COOKIE, "", 0))
        return response

    def json(self, data: Any, status: int = 200) -> Response:
        body = orjson.dumps(jsonable(data), default=_default, option=orjson.OPT_NON_STR_KEYS)
        # <, > and & only occur inside JSON strings: escaping them keeps the JSON identical
        # and inert even if some client sniffs it as HTML
        body = body.replace(b"<", b"\\u003c").replace(b">", b"\\u003e").replace(b"&", b"\\u0026")
        # and text-reordering characters travel as escapes (same data, nothing applied)
        body = INVISIBLE.sub(lambda m: f"\\u{ord(m.group()):04x}", body.decode()).encode()
        return Response(body, status_code=status, media_type="application/json")

    def redirect(
        self, conn: HTTPConnection, to: str, message: str = "", level: str = "ok"
    ) -> Response:
        response = RedirectResponse(root_of(conn) + to, status_code=303)
        if message:
            value = quote(f"{level}|{message[:FLASH_MOST]}", safe="")
            response.headers.append("set-cookie", cookie_header(conn, FLASH_COOKIE, value, 60))
        return response

    def error(self, conn: HTTPConnection, status: int, message: str) -> Response:
        """An error page (or JSON for /api): the message only, never a traceback."""
        if is_api(conn):
            return JSONResponse({"error": message, "status": status}, status_code=status)
        # a 503 page (Redis unavailable) retries by itself and reloads once the server answers
        retry = (self.settings.refresh or 5.0) if status == 503 else 0
        return self.page(
            conn, "error.html", status, status=status, message=message, refresh=0, retry=retry
        )

    def unauthorized(self, conn: HTTPConnection, message: str = "") -> Response:
        s = self.settings
        if is_api(conn) or not s.token:
            response = self.error(conn, 401, message or "Authentication required.")
        else:
            response = self.page(conn, "login.html", 401, message=message, refresh=0)
        challenge = 'Basic realm="errands dashboard", charset="UTF-8"' if s.basic_auth else ""
        if s.token:
            challenge = ", ".join(filter(None, [challenge, 'Bearer realm="errands dashboard"']))
        response.headers["www-authenticate"] = challenge
        return response


def _seconds(value: Any) -> float | None:
    """A time or duration to show: None for a value that is no number (a corrupt record's)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and abs(value) < 1e11:
        return float(value)
    return None


def _ts(epoch: Any) -> str:
    if (epoch := _seconds(epoch)) is None:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _span(seconds: float) -> str:
    if seconds < 1:
        return f"{int(seconds * 1000)}ms"
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m {int(seconds % 60)}s"
    if seconds < 86400:
        return f"{int(seconds // 3600)}h {int(seconds % 3600 // 60)}m"
    return f"{int(seconds // 86400)}d {int(seconds % 86400 // 3600)}h"


def _duration(seconds: Any) -> str:
    return "-" if (seconds := _seconds(seconds)) is None else _span(max(0.0, seconds))


def _pretty(value: Any) -> str:
    return _dumps(value, indent=True)


def _brief(value: Any, limit: int = 80) -> str:
    text = value if isinstance(value, str) else _dumps(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _q(value: Any) -> str:
    return quote(str(value), safe="")
