"""Limits in an operator's words (``rate 2/10 s``, ``1 per partition``): the Queues page's
"Running / limit" column and a queue's own page use the same words."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ..admin.jobinfo import QueueInfo
from ..admin.limitsinfo import LimitsView
from ..limits import Concurrency, Limit

__all__ = ["limit_words", "running_limits"]

_UNITS = ((86_400_000, "d"), (3_600_000, "h"), (60_000, "min"), (1000, "s"), (1, "ms"))


def _window(ms: int) -> str:
    for size, unit in _UNITS:
        if ms % size == 0:
            return f"{ms // size} {unit}"
    return f"{ms} ms"  # (unreachable: every whole ms divides by 1)


def limit_words(limit: Limit) -> str:
    """``3 at once``, ``1 per partition``, ``rate 2/10 s``, ``rate 5/1 s per partition``."""
    if isinstance(limit, Concurrency):
        return f"{limit.limit} per partition" if limit.per_partition else f"{limit.limit} at once"
    text = f"rate {limit.limit}/{_window(limit.per_ms)}"
    return text + " per partition" if limit.per_partition else text


def _binding(max_concurrency: int, limits: Iterable[Limit]) -> str:
    words = [str(max_concurrency)] if max_concurrency else []
    for limit in limits:
        typewide = isinstance(limit, Concurrency) and not limit.per_partition
        if not (typewide and max_concurrency):  # (max_concurrency is the type-wide one applied)
            words.append(limit_words(limit))
    return " · ".join(words) or "∞"


def running_limits(queues: Iterable[QueueInfo], views: Mapping[str, LimitsView]) -> dict[str, str]:
    """Per job name, what bounds its running jobs: ``3``, ``rate 2/10 s``, ``1 per partition``
    (``∞``: nothing does)."""
    return {
        q.name: _binding(q.max_concurrency, views[q.name].effective if q.name in views else ())
        for q in queues
    }
