"""Logging helpers: the ``extra`` fields of per-job log lines, and a JSON formatter for the
worker CLI (``python -m errands worker ... --log-format json``)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import orjson

from .job import Job

__all__ = ["JSONFormatter", "configure_logging", "job_extra"]

# LogRecord attributes that are not user-supplied extras
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def job_extra(job: Job) -> dict[str, Any]:
    """``extra=`` of a log line about one job: ``job_id``, ``job_name`` and ``attempt`` become
    attributes of the LogRecord (and fields of JSON log lines)."""
    return {"job_id": job.id, "job_name": job.name, "attempt": job.attempt}


class JSONFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (ISO 8601, UTC), ``level``, ``logger``, ``message``,
    every ``extra`` field (``job_id``, ``job_name``...), and ``exception`` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return orjson.dumps(entry, default=repr).decode()


def configure_logging(log_format: str = "text", level: str | int = logging.INFO) -> None:
    """Log to stderr in ``text`` or ``json`` format (replaces the root logger's handlers)."""
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
