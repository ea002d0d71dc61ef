"""Logging helpers: the ``extra`` fields of per-job log lines, an exception as text whatever its
``__str__`` does, and a JSON formatter for the worker CLI (``python -m errands worker ...
--log-format json``)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import orjson

from .job import Job

__all__ = ["JSONFormatter", "configure_logging", "describe", "job_extra", "json_entry", "logs_json"]

# LogRecord attributes that are not user-supplied extras
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def describe(exc: BaseException, *, named: bool = True) -> str:
    """``"Type: message"`` of an exception (the message alone without ``named``), whatever its
    ``__str__`` does: one that raises gives ``"Type: <str() failed: ...>"`` (an error of the
    handler's exception must not stop its job from being settled)."""
    name = type(exc).__name__
    try:
        message = str(exc)
    except Exception as bad:
        message = f"<str() failed: {type(bad).__name__}>"
    return f"{name}: {message}" if named else message


def job_extra(job: Job) -> dict[str, Any]:
    """``extra=`` of a log line about one job: ``job_id``, ``job_name`` and ``attempt`` become
    attributes of the LogRecord (and fields of JSON log lines)."""
    return {"job_id": job.id, "job_name": job.name, "attempt": job.attempt}


class JSONFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (ISO 8601, UTC), ``level``, ``logger``, ``message``,
    every ``extra`` field (``job_id``, ``job_name``...), and ``exception`` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry = json_entry(record.created, record.levelname, record.name, record.getMessage())
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return orjson.dumps(entry, default=repr).decode()


def json_entry(created: float, level: str, logger: str, message: str) -> dict[str, Any]:
    """The fields every JSON log line has (``JSONFormatter``; also the third signal's exit line,
    written without ``logging``: worker/runner.py)."""
    when = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
    return {"time": when, "level": level, "logger": logger, "message": message}


def logs_json() -> bool:
    """Whether the root logger writes JSON lines (``configure_logging("json")``, the worker's
    ``--log-format json``): a read of its handlers, no lock taken."""
    return any(isinstance(h.formatter, JSONFormatter) for h in logging.getLogger().handlers)


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
