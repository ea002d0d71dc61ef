"""Checks of the CLI's input shared by its commands: ``--args`` (a JSON object that JSON can
hold exactly) and job names that look like typos."""

from __future__ import annotations

import difflib
import json
import math
from typing import Any

from ..admin.client import Client
from ..admin.inspection import text
from ..errors import JobNotFoundError
from ..store.keys import check_job_name

__all__ = ["json_args", "require_job_type", "unknown_job_type"]


async def require_job_type(client: Client, name: str, force: bool, action: str) -> None:
    """A name that no pool serves or registered and nothing was enqueued under is a typo."""
    unknown = await unknown_job_type(client, name)
    if unknown is not None and not force:
        raise JobNotFoundError(f"{unknown}--force {action} anyway)")


async def unknown_job_type(client: Client, name: str) -> str | None:
    """For a name that no pool serves or registered and nothing was enqueued under (a typo?),
    the start of a message: ``no job type ... (did you mean ...? ``; else None."""
    check_job_name(name)
    known = set(await client.job_names())  # ever enqueued
    known |= {text(n) for n in await client.redis.hkeys(client.keys.limits)}  # ever served
    if name in known:
        return None
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"no job type {name!r} in namespace {client.keys.namespace!r} ({hint}"


def json_args(text: str) -> dict[str, Any]:
    """``--args``: a JSON object. Refused: NaN and Infinity (and numbers too big for a float),
    which JSON cannot hold, and integers outside the 64-bit range, which would be stored
    rounded to floats (orjson reads them so)."""
    try:
        payload = json.loads(text, parse_constant=_constant, parse_float=_float, parse_int=_int)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--args is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise ValueError("--args must be a JSON object, e.g. '{\"id\": 1}'")
    return payload


def _constant(token: str) -> Any:
    raise ValueError(f"--args: {token} is not JSON (JSON has no NaN or Infinity)")


def _float(token: str) -> float:
    value = float(token)
    if not math.isfinite(value):
        raise ValueError(f"--args: {token} is too big for a number")
    return value


def _int(token: str) -> int:
    if len(token) > 21 or not -(2**63) <= (value := int(token)) < 2**64:
        raise ValueError(f"--args: integer {token[:40]} is outside the 64-bit range")
    return value
