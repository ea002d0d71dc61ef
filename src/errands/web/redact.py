"""Redaction of secret job data before it reaches a page or the JSON API.

A key is redacted when its normalized form (lower case, ``-`` read as ``_``) contains one of the
configured keys, at any depth of args, meta, results and checkins; e.g. ``password`` covers
``db_password`` and ``X-Password``. The values found under such keys (4 characters or more) are
also masked wherever they appear in error messages and tracebacks of the same job.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any, TypeVar

from ..admin.jobinfo import HistoryEntry, JobInfo, WorkerInfo
from ..periodic.store import ScheduleInfo

__all__ = ["MASK", "Redactor"]

MASK = "[redacted]"
MIN_SECRET_LENGTH = 4
T = TypeVar("T")


def _normal(key: str) -> str:
    return key.lower().replace("-", "_")


class Redactor:
    def __init__(self, keys: Iterable[str]) -> None:
        self.keys = tuple(sorted({_normal(k) for k in keys if k}))

    def hides(self, key: object) -> bool:
        return isinstance(key, str) and any(k in _normal(key) for k in self.keys)

    def value(self, value: Any) -> Any:
        """A copy of ``value`` with every secret key's value replaced by ``[redacted]``."""
        if not self.keys:
            return value
        if isinstance(value, dict):
            return {k: MASK if self.hides(k) else self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
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
            return text
        for secret in sorted(secrets, key=len, reverse=True):
            text = text.replace(secret, MASK)
        return text

    def error(self, error: Any, secrets: set[str]) -> Any:
        if not isinstance(error, dict):
            return self.value(error)
        cleaned = self.value(error)
        return {k: self.text(v, secrets) for k, v in cleaned.items()}

    def job(self, info: JobInfo) -> JobInfo:
        hidden = self.secrets(info.args, info.meta, info.result, info.checkin)
        raw = info.raw
        if raw is not None:  # undecodable envelope: show it only when no secret key is named
            lowered = _normal(raw.decode("utf-8", "replace"))
            raw = MASK.encode() if any(k in lowered for k in self.keys) else raw
        return dataclasses.replace(
            info,
            args=self.value(info.args),
            meta=self.value(info.meta),
            result=self.value(info.result),
            checkin=self.error(info.checkin, hidden),
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
