"""Redis URLs in messages: passwords hidden, whatever the scheme."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

__all__ = ["redact_url"]


def redact_url(url: str) -> str:
    """``redis://user:secret@host/0`` -> ``redis://user:***@host/0``; also hides passwords in
    the query string (``?sentinel_password=...``) and works for every scheme errands knows."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable Redis URL>"
    netloc, query = parts.netloc, parts.query
    userinfo, at, hostport = netloc.rpartition("@")
    if at and ":" in userinfo:
        # keep host and port verbatim: .port raises on a bad port, .hostname drops IPv6 brackets
        netloc = f"{userinfo.partition(':')[0]}:***@{hostport}"
    if "password" in query.lower():
        query = "&".join(_redact_option(option) for option in query.split("&"))
    if (netloc, query) == (parts.netloc, parts.query):
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _redact_option(option: str) -> str:
    name, eq, _value = option.partition("=")
    return f"{name}=***" if eq and "password" in name.lower() else option
