"""Values as the readers (the Client, the dashboard) take them from Redis, where any of them
may be corrupt: text that is not UTF-8, counters that are not integers. Pure: no I/O."""

from __future__ import annotations

import re

__all__ = ["stored_count", "stored_number", "stored_text"]

_INTEGER = re.compile(r"0|-?[1-9][0-9]{0,17}")  # as Redis reads one (lib/types.lua is_int)


def stored_text(value: bytes | str) -> str:
    """A name, id or field as text; bytes that are not UTF-8 read as U+FFFD (a member no
    script wrote: shown, never raised)."""
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def stored_number(value: bytes | str | int | None) -> int | None:
    """A counter as stored when it is an integer as Redis spells it (no '1.5e3', '007', '',
    '\u00b2'), else None (missing, or corrupt)."""
    if isinstance(value, int):
        return value
    if value is None or not _INTEGER.fullmatch(stored_text(value)):
        return None
    return int(value)


def stored_count(value: bytes | str | int | None) -> int:
    """A counter or limit as stored (:func:`stored_number`), 0 when missing or corrupt."""
    number = stored_number(value)
    return 0 if number is None else number
