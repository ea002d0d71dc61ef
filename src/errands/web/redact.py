"""Redaction of secret job data before it reaches a page or the JSON API.

Key names are compared in a normal form: lower-case letters and digits only, so ``apiKey``,
``API-KEY``, ``api.key`` and ``api_key`` are all ``apikey``. A key is redacted when its normal
form contains one of the configured words (``password`` covers ``db_password`` and
``X-Password``); words of 4 characters or fewer (``auth``, ``pwd``, ``jwt``) must instead be a
whole word of the key (``basicAuth``, ``auth_header``, ``jwt`` but not ``author``), as they
occur inside harmless words. This applies at any depth of args, meta, results and checkins.
The values found under such keys (4 characters or more) are also masked wherever they appear
in error messages and tracebacks of the same job. Independently of the keys, the user
information of URLs (``postgres://app:secret@db/app``) is masked in every string shown.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from typing import Any, TypeVar

from ..admin.jobinfo import HistoryEntry, JobInfo, WorkerInfo
from ..periodic.listing import ScheduleInfo

__all__ = ["MASK", "Redactor", "mask_urls"]

MASK = "[redacted]"
MIN_SECRET_LENGTH = 4
SHORT_WORD = 4
T = TypeVar("T")
_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
# scheme://userinfo@ : the userinfo (user, password or a token in the user part) is masked
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)([^\s/?#@\[\]]+(?:@[^\s/?#@]+)*)@")


def _normal(key: str) -> str:
    return "".join(c for c in key.lower() if c.isalnum())


def _words(key: str) -> set[str]:
    return {w.lower() for w in _WORDS.findall(key)}


def mask_urls(text: str) -> str:
    """``postgres://app:secret@db/app`` -> ``postgres://[redacted]@db/app``."""
    if "://" not in text:
        return text
    return _URL_USERINFO.sub(lambda m: m.group(1) + MASK + "@", text)


class Redactor:
    def __init__(self, keys: Iterable[str]) -> None:
        normal = {_normal(k) for k in keys if _normal(k)}
        self.long = tuple(sorted(k for k in normal if len(k) > SHORT_WORD))
        self.short = frozenset(k for k in normal if len(k) <= SHORT_WORD)
        self.keys = tuple(sorted(normal))

    def hides(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        normal = _normal(key)
        if any(k in normal for k in self.long):
            return True
        return bool(self.short) and (normal in self.short or bool(_words(key) & self.short))

    def value(self, value: Any) -> Any:
        """A copy of ``value`` with every secret key's value replaced by ``[redacted]`` and
        the user information of URLs in strings masked."""
        if isinstance(value, dict):
            return {k: MASK if self.hides(k) else self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        if isinstance(value, str):
            return mask_urls(value)
        return value

    def secrets(self, *values: Any) -> set[str]:
        """The string (and number) values under secret keys, to mask them in free text."""
        found: set[str] = set()

        def walk(value: Any, hidden: bool) -> None:
            if isinstance(value, dict):
                for k, v in value.items():
                    walk(v, hidden or self.hides(k))
            elif isinstance(value, list | tuple):
                for v in value:
                    walk(v, hidden)
            elif hidden and isinstance(value, str | int | float) and not isinstance(value, bool):
                text = str(value)
                if len(text) >= MIN_SECRET_LENGTH:
                    found.add(text)

        for value in values:
            walk(value, False)
        return found

    def text(self, text: Any, secrets: set[str]) -> Any:
        if not isinstance(text, str):
            return self.value(text)
        for secret in sorted(secrets, key=len, reverse=True):
            text = text.replace(secret, MASK)
        return mask_urls(text)

    def error(self, error: Any, secrets: set[str]) -> Any:
        if not isinstance(error, dict):
            return self.value(error)
        cleaned = self.value(error)
        return {k: self.text(v, secrets) for k, v in cleaned.items()}

    def job(self, info: JobInfo) -> JobInfo:
        hidden = self.secrets(info.args, info.meta, info.result, info.checkin)
        raw = info.raw
        if raw is not None:  # undecodable envelope: show it only when no secret key is named
            decoded = raw.decode("utf-8", "replace")
            named = any(k in _normal(decoded) for k in self.keys)
            raw = MASK.encode() if named else mask_urls(decoded).encode()
        return dataclasses.replace(
            info,
            args=self.value(info.args),
            meta=self.value(info.meta),
            result=self.value(info.result),
            checkin=self.error(info.checkin, hidden),
            progress=self.value(info.progress),
            error=self.error(info.error, hidden),
            raw=raw,
        )

    def entry(self, entry: HistoryEntry) -> HistoryEntry:
        hidden = self.secrets(entry.args, entry.result)
        return dataclasses.replace(
            entry,
            args=self.value(entry.args),
            result=self.value(entry.result),
            error=self.error(entry.error, hidden),
        )

    def worker(self, worker: WorkerInfo) -> WorkerInfo:
        hidden = self.secrets(worker.args)
        return dataclasses.replace(
            worker, args=self.value(worker.args), checkin=self.error(worker.checkin, hidden)
        )

    def schedule(self, info: ScheduleInfo) -> ScheduleInfo:
        return dataclasses.replace(info, args=self.value(info.args))

    def each(self, items: Iterable[T]) -> list[T]:
        out: list[Any] = []
        for item in items:
            if isinstance(item, JobInfo):
                out.append(self.job(item))
            elif isinstance(item, HistoryEntry):
                out.append(self.entry(item))
            elif isinstance(item, WorkerInfo):
                out.append(self.worker(item))
            elif isinstance(item, ScheduleInfo):
                out.append(self.schedule(item))
            else:
                out.append(item)
        return out
