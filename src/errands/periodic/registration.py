"""Registering periodic schedules: the scheduling methods of :class:`~errands.WorkerPool`
(``periodically_enqueue``, ``every``, ``daily``, ``hourly``) and the named schedules of
``pyproject.toml`` / ``errands.toml``."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from ..checks import seconds
from ..dedup import Dedup
from ..errors import RegistrationError
from .spec import is_named, parse_duration
from .store import PeriodicSchedule, make_periodic

__all__ = ["PeriodicRegistration", "load_named_schedules"]


def load_named_schedules(directory: str | Path = ".") -> dict[str, Any]:
    """Named schedules from ``[tool.errands.schedules]`` in ``pyproject.toml`` and from
    ``errands.toml`` (``[schedules]`` or ``[tool.errands.schedules]``); errands.toml wins."""
    found: dict[str, Any] = {}
    for filename in ("pyproject.toml", "errands.toml"):
        path = Path(directory) / filename
        if not path.is_file():
            continue
        try:
            data = tomllib.loads(path.read_text("utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise RegistrationError(f"cannot read named schedules from {path}: {exc}") from None
        table = data.get("tool", {}).get("errands", {}).get("schedules", {})
        if filename == "errands.toml":
            table = {**data.get("schedules", {}), **table}
        if not isinstance(table, dict):
            raise RegistrationError(f'{path}: schedules must be a table of NAME = "spec"')
        found.update(table)
    return found


class PeriodicRegistration:
    """The scheduling methods of :class:`~errands.WorkerPool`."""

    _started: bool
    _periodic: list[PeriodicSchedule]
    _named_schedules: Mapping[str, Any] | None

    def periodically_enqueue(
        self,
        spec: str | timedelta,
        job_name: str,
        args: Mapping[str, Any] | None = None,
        *,
        name: str | None = None,
        tz: str = "UTC",
        misfire: str = "skip",
        misfire_grace: float | timedelta = 60.0,
        skip_if_running: bool = False,
        priority: int = 0,
        dedup: Dedup | None = None,
    ) -> PeriodicSchedule:
        """Enqueue ``job_name`` with ``args`` on ``spec``: 6 cron fields (seconds first), 5
        fields, ``@daily``-style macros, ``@every 1h30m``, a timedelta, or ``cron.NAME``.

        ``name`` (default: the job name) identifies the schedule across pools; ``tz`` is the
        zone cron fields are read in; ``misfire`` is ``"skip"`` (runs more than
        ``misfire_grace`` seconds late are dropped) or ``"catch_up"`` (one run for all missed
        fire times); ``skip_if_running`` skips a fire while the previous run is unfinished;
        ``dedup`` enqueues each run with it (a fire whose key is held is skipped).
        """
        if self._started:
            raise RegistrationError("add schedules before the pool starts (or use a Client)")
        named = None
        if is_named(spec):
            named = {**load_named_schedules(), **(self._named_schedules or {})}
        periodic = make_periodic(
            spec,
            job_name,
            args,
            name=name,
            tz=tz,
            misfire=misfire,
            misfire_grace=misfire_grace,
            skip_if_running=skip_if_running,
            priority=priority,
            named=named,
            dedup=dedup,
        )
        if any(p.name == periodic.name for p in self._periodic):
            raise RegistrationError(
                f"schedule {periodic.name!r} is already registered: give a different name="
            )
        self._periodic.append(periodic)
        return periodic

    def every(
        self,
        interval: timedelta | float | str,
        job_name: str,
        args: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> PeriodicSchedule:
        """Every ``interval`` (timedelta, seconds, or ``"5m"``), aligned on the Unix epoch."""
        if isinstance(interval, str):
            interval = timedelta(milliseconds=parse_duration(interval))
        else:
            secs = seconds("interval", interval, zero=False, error=RegistrationError)
            interval = timedelta(milliseconds=round(secs * 1000))
        return self.periodically_enqueue(interval, job_name, args, **options)

    def daily(
        self,
        job_name: str,
        args: Mapping[str, Any] | None = None,
        *,
        hour: int,
        minute: int = 0,
        **options: Any,
    ) -> PeriodicSchedule:
        """Every day at ``hour:minute`` in the schedule's ``tz`` (default UTC)."""
        _check_range("hour", hour, 23)
        _check_range("minute", minute, 59)
        return self.periodically_enqueue(f"0 {minute} {hour} * * *", job_name, args, **options)

    def hourly(
        self,
        job_name: str,
        args: Mapping[str, Any] | None = None,
        *,
        minute: int = 0,
        **options: Any,
    ) -> PeriodicSchedule:
        """Every hour at ``minute``."""
        _check_range("minute", minute, 59)
        return self.periodically_enqueue(f"0 {minute} * * * *", job_name, args, **options)

    def _init_periodic(self, schedules: Mapping[str, Any] | None) -> None:
        self._periodic = []
        self._named_schedules = schedules


def _check_range(what: str, value: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= high:
        raise RegistrationError(f"{what} must be an int in 0..{high}, got {value!r}")
