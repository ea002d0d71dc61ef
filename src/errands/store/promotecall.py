"""The KEYS and ARGV of a ``promote.lua`` call (:meth:`Scripts.promote <.scripts.Scripts.promote>`)
and the reading of its reply: the jobs moved, the earliest due time left, and the job names it
left alone because one of their own keys holds another type (:class:`Promoted`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .keys import Keys

__all__ = ["Promoted", "promote_request", "read_promote_reply"]


@dataclass(frozen=True)
class Promoted:
    """What one ``promote`` call did."""

    moved: int
    earliest: int  # the earliest due time (ms) still waiting, or -1
    # job name -> its first own key of another type: none of its jobs was moved (or counted
    # in `earliest`)
    left: dict[str, str] = field(default_factory=dict)


def promote_request(
    k: Keys, names: Sequence[str], now_ms: int, limit: int
) -> tuple[list[str], list[Any]]:
    """The KEYS and ARGV of a promote of the due jobs of ``names``, at most ``limit`` a set."""
    keys = [k.priorities, k.seq, k.idle, k.partitions]
    for name in names:
        keys += (k.queue(name), k.scheduled(name), k.retry(name))
        keys += (k.partition_queue(name), k.partitions_ready(name), k.idle_for(name))
    return keys, [now_ms, limit, k.wake_channel]


def read_promote_reply(reply: Any, names: Sequence[str]) -> Promoted:
    """promote.lua's reply to a call of ``names``."""
    moved, earliest, *rest = reply
    flat = (
        [v.decode(errors="replace") if isinstance(v, bytes) else v for v in rest[0]] if rest else []
    )
    left = {names[int(i) - 1]: str(key) for i, key in zip(flat[::2], flat[1::2], strict=True)}
    return Promoted(int(moved), int(earliest), left)
