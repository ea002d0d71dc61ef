"""A form refused with an error keeps what the operator typed: the redirect back to its page
carries the fields in the query (the page fills the form from them). Never the add-schedule
form's args: they may hold secrets, and a query lands in access logs and browser history."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request

__all__ = ["draft", "kept"]

# per action: the fields carried back after an error (each cut at FIELD_MOST characters)
KEPT = {"/schedules/add": ("name", "job", "spec", "tz", "enabled")}
FIELD_MOST = 500


def kept(path: str, form: dict[str, str], back: str) -> str:
    """``back`` with the action's kept fields in its query (``back`` itself for other actions,
    or when ``back`` has a query of its own already)."""
    fields = KEPT.get(path)
    if not fields or "?" in back or "#" in back:
        return back
    values = {f: form.get(f, "")[:FIELD_MOST] for f in fields}
    values["enabled"] = "1" if values["enabled"] not in ("", "0", "false", "off") else "0"
    return f"{back}?{urlencode({'draft': '1', **values})}#add-schedule"


def draft(request: Request) -> dict[str, Any] | None:
    """The add-schedule form's fields carried back after an error (None: a fresh form)."""
    q = request.query_params
    if q.get("draft") != "1":
        return None
    values: dict[str, Any] = {f: q.get(f, "")[:FIELD_MOST] for f in KEPT["/schedules/add"]}
    values["enabled"] = values["enabled"] != "0"
    return values
