"""Retry backoff policies. Pure: given how often a job failed, how long until it runs again."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from .checks import seconds, whole

__all__ = [
    "Backoff",
    "ExponentialBackoff",
    "FixedBackoff",
    "LinearBackoff",
    "RetryOptions",
    "backoff_from_dict",
]

MAX_FAILS = 10**9  # the most per-job max_fails: beyond any use, and within what JSON readers hold


@runtime_checkable
class Backoff(Protocol):
    """Seconds to wait before the next attempt, after the job has failed ``fails`` times."""

    def delay(self, fails: int) -> float: ...


@dataclass(frozen=True)
class ExponentialBackoff:
    """Sidekiq's and gocraft/work's curve: ``fails**4 + base + rand(jitter) * (fails + 1)``.

    Delays for fails 1, 2, 3, 4, 5 are about 16 s, 31 s, 96 s, 4.5 min, 10.7 min (plus jitter).
    """

    base: float = 15.0
    jitter: float = 30.0
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "base", seconds("ExponentialBackoff base", self.base))
        object.__setattr__(self, "jitter", seconds("ExponentialBackoff jitter", self.jitter))

    def delay(self, fails: int) -> float:
        spread = self.rng.random() * self.jitter if self.jitter else 0.0
        return float(fails**4) + self.base + spread * (fails + 1)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "exponential", "base": self.base, "jitter": self.jitter}


@dataclass(frozen=True)
class LinearBackoff:
    """``base * fails`` seconds: 30 s, 60 s, 90 s, ... for ``LinearBackoff(30)``."""

    base: float = 30.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "base", seconds("LinearBackoff base", self.base))

    def delay(self, fails: int) -> float:
        return self.base * fails

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "linear", "base": self.base}


@dataclass(frozen=True)
class FixedBackoff:
    """The same delay every time."""

    seconds: float = 60.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "seconds", seconds("FixedBackoff seconds", self.seconds))

    def delay(self, fails: int) -> float:
        return self.seconds

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "fixed", "seconds": self.seconds}


class _CallableBackoff:
    def __init__(self, fn: Callable[[int], float]) -> None:
        self._fn = fn

    def delay(self, fails: int) -> float:
        return float(self._fn(fails))


def as_backoff(value: Backoff | Callable[[int], float]) -> Backoff:
    """Accept a policy object or a plain ``fails -> seconds`` callable."""
    if isinstance(value, Backoff):
        return value
    if callable(value):
        return _CallableBackoff(value)
    raise TypeError(f"backoff must be a Backoff or a callable, got {type(value).__name__}")


def backoff_from_dict(data: dict[str, Any]) -> Backoff:
    """Rebuild a policy stored with a job (per-job retry options)."""
    kind = data.get("kind")
    if kind == "exponential":
        return ExponentialBackoff(base=float(data["base"]), jitter=float(data["jitter"]))
    if kind == "linear":
        return LinearBackoff(float(data["base"]))
    if kind == "fixed":
        return FixedBackoff(float(data["seconds"]))
    raise ValueError(f"unknown backoff kind {kind!r}")


@dataclass(frozen=True)
class RetryOptions:
    """Per-job retry settings given at enqueue; they override the job type's.

    ``max_retries=5`` allows five retries after the first attempt; ``max_fails=6`` says the
    same the way ``@pool.job(max_fails=...)`` does.
    The backoff must be a built-in policy: it travels with the job as data.
    """

    max_retries: int | None = None
    backoff: ExponentialBackoff | LinearBackoff | FixedBackoff | None = None
    max_fails: int | None = None

    def __post_init__(self) -> None:
        if self.max_retries is not None:
            whole("max_retries", self.max_retries, least=0, most=MAX_FAILS - 1)
        if self.max_fails is not None:
            whole("max_fails", self.max_fails, least=1, most=MAX_FAILS)
            if self.max_retries is not None and self.max_retries + 1 != self.max_fails:
                raise ValueError("give max_retries or max_fails (= max_retries + 1), not both")
            object.__setattr__(self, "max_retries", self.max_fails - 1)
        if self.backoff is not None and not hasattr(self.backoff, "to_dict"):
            raise TypeError(
                "per-job backoff must be ExponentialBackoff, LinearBackoff or FixedBackoff"
            )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.max_retries is not None:
            out["max_fails"] = self.max_retries + 1
        if self.backoff is not None:
            out["backoff"] = self.backoff.to_dict()
        return out
