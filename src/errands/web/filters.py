"""Filters of the job lists (Scheduled, Retry, Dead, Cancelled, History): by job name and by
text found in a job's id, args, result or error message. Matching reads the listing page by
page through the Client, at most ``SCAN_LIMIT`` jobs (newest or soonest first), and looks at
the *redacted* jobs only, so a filter cannot be used to probe hidden values."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from ..admin.jobinfo import HistoryEntry, JobInfo, Page
from .redact import Redactor

__all__ = ["SCAN_LIMIT", "Filter", "filtered_page"]

SCAN_LIMIT = 500
PER_PAGE = 20


class Filter:
    def __init__(self, name: str | None, text: str | None) -> None:
        self.name = name or None
        self.text = (text or "").strip().casefold()[:200] or None

    def __bool__(self) -> bool:
        return bool(self.name or self.text)

    def query(self) -> str:
        """The filter as a query string prefix for links (``name=x&q=y&``)."""
        from urllib.parse import urlencode

        fields = {"name": self.name or "", "q": self.text or ""}
        pairs = {k: v for k, v in fields.items() if v}
        return urlencode(pairs) + "&" if pairs else ""

    def matches(self, item: JobInfo | HistoryEntry) -> bool:
        if self.name is not None and item.name != self.name:
            return False
        if self.text is None:
            return True
        error = item.error.get("error", "") if isinstance(item.error, dict) else item.error
        haystack = [item.id, _dump(item.args), _dump(item.result), str(error or "")]
        return any(self.text in h.casefold() for h in haystack)


def _dump(value: Any) -> str:
    if value is None:
        return ""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return repr(value)


async def filtered_page(
    lister: Callable[[int], Awaitable[Page[Any]]],
    redactor: Redactor,
    page: int,
    wanted: Filter,
) -> tuple[Page[Any], int]:
    """The ``page``-th page of matching (redacted) items, and how many items were searched
    when the search stopped at ``SCAN_LIMIT`` before the end of the listing (else 0)."""
    matched: list[Any] = []
    scanned = 0
    number = 1
    while True:
        chunk = await lister(number)
        scanned += len(chunk.items)
        matched += [i for i in redactor.each(chunk.items) if wanted.matches(i)]
        if not chunk.items or number >= chunk.pages:
            truncated = False
            break
        if scanned >= SCAN_LIMIT:
            truncated = True
            break
        number += 1
    start = (page - 1) * PER_PAGE
    found = Page(matched[start : start + PER_PAGE], len(matched), page, PER_PAGE)
    return found, scanned if truncated else 0
