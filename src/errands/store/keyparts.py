"""The rules of the parts of Redis keys (job names and ids, any other part): split off
store/keys.py, which builds every key from them."""

from __future__ import annotations

import re

__all__ = ["NAME_RULE", "check_job_id", "check_job_name", "check_part"]

_JOB_NAME = re.compile(r'[^\s"\\{}:\x00-\x1f\x7f]{1,200}')
_BAD_PART = re.compile("[{}\n\r\x00]")  # (compiled once: re.search looks it up per call)
NAME_RULE = "use 1-200 characters without whitespace, quotes, backslashes, braces or ':'"


def check_job_name(name: str) -> str:
    """Job names: 1-200 characters, no whitespace, quotes, backslashes, braces or colons."""
    if not isinstance(name, str) or not _JOB_NAME.fullmatch(name):
        raise ValueError(f"invalid job name {name!r}: {NAME_RULE}")
    return name


def check_job_id(job_id: str) -> str:
    """Job ids given by the caller follow the rules of job names (:func:`check_job_name`)."""
    if not isinstance(job_id, str) or not _JOB_NAME.fullmatch(job_id):
        raise ValueError(f"invalid job id {job_id!r}: {NAME_RULE}")
    return job_id


def check_part(kind: str, value: str) -> str:
    """``value``, a part of a key (what ``kind`` names): a non-empty str without braces (the hash
    tag's), newlines or NUL."""
    if not value or not isinstance(value, str):  # (of another type: TypeError)
        error = ValueError if isinstance(value, str) else TypeError
        raise error(f"{kind} must be a non-empty string, got {type(value).__name__} {value!r}")
    if not str.isalnum(value) and _BAD_PART.search(value):  # (random ids: no search)
        raise ValueError(f"{kind} {value!r} must not contain braces, newlines or NUL")
    return value
