"""What the scripts of ``scripts.py`` are given and return: plain records, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import ResponseError

__all__ = [
    "Acked",
    "FetchResult",
    "Fetched",
    "LeaseLost",
    "ReapRefused",
    "Reaped",
    "Settle",
    "SettleRefused",
]


class LeaseLost(Exception):
    """The pool's lease is gone: a reaper took it (and its jobs) while the pool was cut off or
    frozen. The pool must not fetch, settle or check in under this id again."""


@dataclass(slots=True)
class Fetched:
    """One job moved into a pool's in-progress set by ``fetch``: ``token`` names the attempt
    (acks, settles and check-ins carry it), ``score`` its place on the queue it came from. A
    job of a type with a rate: ``rate_spec``, the limits spec it was fetched under, and
    ``counted_ms``, the Redis ms its start was counted at (its attempt's token records it too:
    a give-back uncounts the start at that time, lua/fetch.lua).

    Not frozen, though nothing changes one: a frozen dataclass's ``__init__`` sets each field
    through ``object.__setattr__``, 1.4 us a job fetched against 0.2 (one is made per job)."""

    queue_index: int
    id: str
    envelope: bytes
    token: str = ""
    score: float = 0.0
    suspect: bool = False
    counted_ms: int = 0
    rate_spec: str = ""


class FetchResult(list[Fetched]):
    """The jobs one ``fetch`` call got, and ``wait``: the seconds until a rate limit that held
    a job back lets one start (None when no rate limit held one back); ``skipped``: the job
    names of the call it left alone, each with the value of its ``running`` count, which is not
    a counter (written by hand: none of their jobs is fetched until it is repaired);
    ``skipped_parts``: the partitions it passed over for the same reason, (job name,
    partition) -> the value of the partition's running count; ``skipped_keys``: the job names
    it left alone because one of their own keys (queue, limits' keys, idle set) holds another
    type, each with that key (none of their jobs is fetched until it is repaired)."""

    def __init__(
        self,
        wait: float | None,
        jobs: list[Fetched],
        skipped: dict[str, str] | None = None,
        skipped_parts: dict[tuple[str, str], str] | None = None,
        skipped_keys: dict[str, str] | None = None,
    ) -> None:
        super().__init__(jobs)
        self.wait = wait
        self.skipped = skipped or {}
        self.skipped_parts = skipped_parts or {}
        self.skipped_keys = skipped_keys or {}


@dataclass(slots=True)
class Acked:
    """A job that succeeded, as handed to ``ack`` (``job`` and ``ran_ms`` are for the log line
    written once the ack went through)."""

    id: str
    name: str
    result: bytes
    started_ms: int
    ttl_ms: int
    attempt: int
    token: str = ""
    envelope_json: bytes = b""  # for the records, when the serializer is not JSON
    history_json: bytes = b""  # for the history, when it differs (a large job's args omitted)
    job: Any = None
    ran_ms: float = 0.0


@dataclass(slots=True)
class Settle:
    """How to settle a job that did not succeed (see lua/settle.lua)."""

    id: str
    name: str
    mode: str
    target: str
    now_ms: int
    attempt: int
    started_ms: int = 0
    envelope: bytes = b""
    score_ms: float | str = 0  # "head": requeue ahead of the jobs of its priority
    error: bytes = b""
    dead_max: int = 10_000
    dead_min_ms: int = 0
    counter: str = ""
    history: bool = True
    ttl_ms: int = 0
    token: str = "*"  # the attempt; "*" = any attempt of this pool (its orphans)
    unstart: bool = False  # a job fetched ahead going back: its start uncounted (at the time
    unstart_spec: str = ""  # its attempt records), under the limits spec it was fetched under
    envelope_json: bytes = b""  # for the records, when the serializer is not JSON
    history_json: bytes = b""  # for the history, when it differs (a large job's args omitted)
    wake: bool = True  # its name has a concurrency limit (or unknown): the slot it frees wakes


class SettleRefused(ResponseError):
    """settle.lua refused a job before writing anything of it (its reply was the reason, given
    as the message: a bad argument, a key of another type, a counter that is not one); sent
    again, it is refused again until the key is repaired. A ``ResponseError``, as the script's
    error reply it replaces was."""


class ReapRefused(ResponseError):
    """reap.lua refused to reap a pool before writing anything (a key of another type, a count
    that is not a counter, a bad argument: the message says which, ending "nothing reaped"); its
    reply was the reason, a string, not an error reply, so that a change of wording cannot turn
    it into another error. The reaper logs it and reaps the other dead pools. A
    ``ResponseError``, as the script's error reply it replaces was."""


@dataclass(frozen=True, slots=True)
class Reaped:
    """What one ``reap`` call did."""

    requeued: int
    buried: int
    cancelled: int
    drained: bool  # the pool is gone: its in-progress set is empty
    alive: bool  # it beat again: left alone
    # stats fields (dead, cancelled) that were not counters: replaced by this call's counts
    replaced: tuple[str, ...] = ()
    # job name -> its `running` count's value (not a counter): its entries were left alone
    unfit: dict[str, str] = field(default_factory=dict)
    # (job name, partition) -> its partition's running count's value (not a counter): its
    # entries were left alone, `held` of them
    unfit_parts: dict[tuple[str, str], str] = field(default_factory=dict)
    held: int = 0
    # job name -> its first own key of another type (queue, partitions running, partition
    # queue, partitions ready, history): its entries were left alone, `key_held` of them
    key_unfit: dict[str, str] = field(default_factory=dict)
    key_held: int = 0
