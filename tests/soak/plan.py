"""The fault schedule of a soak: a pure function of the seed, the duration and the number of
worker slots, so a failing seed replays the same faults at the same offsets against the same
slots. Pure: no I/O, no clock."""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from dataclasses import dataclass

__all__ = [
    "CAPS",
    "DEDUP",
    "ITERABLE",
    "KINDS",
    "PARTITIONED",
    "PRODUCER",
    "REDIS",
    "Fault",
    "make_plan",
    "plan_digest",
    "plan_summary",
]

# job name -> max_concurrency of the capped job types of tests/soak/app.py
CAPS = {"soak_capped": 2, "soak_serial": 1}


@dataclass(frozen=True)
class Partitioned:
    """The flow-controlled job type of tests/soak/app.py: ``Concurrency(1, per_partition=True)``
    and ``Rate(rate, per=per seconds, per_partition=True)``, over ``partitions`` partitions."""

    name: str = "soak_part"
    rate: int = 4
    per: float = 1.0
    partitions: int = 32


PARTITIONED = Partitioned()


@dataclass(frozen=True)
class Deduped:
    """The deduplicated job type of tests/soak/app.py, enqueued with ``Dedup(key,
    until="finished", rerun_latest=True)`` over ``keys`` keys ("k0".."k<keys-1>")."""

    name: str = "soak_dedup"
    keys: int = 3


DEDUP = Deduped()


@dataclass(frozen=True)
class Resumable:
    """The iterable (checkpointed) job type of tests/soak/app.py: ``items`` items (drawn in
    this range) of ``seconds`` each (in this range), a checkpoint at most every
    ``checkpoint_every`` seconds."""

    name: str = "soak_iter"
    items: tuple[int, int] = (20, 60)
    seconds: tuple[float, float] = (0.05, 0.15)
    checkpoint_every: float = 0.5


ITERABLE = Resumable()

# kind -> weight. Targets: a worker slot (0..workers-1); network faults may also hit the
# producer's connection (PRODUCER); a Redis restart hits Redis (REDIS).
KINDS: dict[str, int] = {
    "sigkill": 3,  # SIGKILL a worker; the slot is refilled
    "sigterm": 2,  # SIGTERM a worker (graceful stop); the slot is refilled
    "sigstop": 3,  # SIGSTOP a worker for `duration`, then SIGCONT (shorter or longer than dead)
    "redis_restart": 1,  # SIGKILL Redis (AOF, appendfsync always), restart after `duration`
    "reset": 3,  # RST every connection through the target's proxy
    "delay": 3,  # hold the target's replies for `duration`, past the socket timeout
    "blackhole": 2,  # the target's connections go silent (both ways) for `duration`
}
PRODUCER = -1
REDIS = -2
# the n-th fault of each worker kind is aimed at AIMS[n % 4] (see make_plan)
AIMS = (DEDUP.name, ITERABLE.name, "", "")


@dataclass(frozen=True)
class Fault:
    at: float  # seconds from the start of the soak
    kind: str
    target: int  # worker slot, PRODUCER or REDIS
    duration: float = 0.0
    # a worker fault aimed at a job type: it hits a worker running a job of that type when the
    # fault is due or up to 3 s later (the oracle tells which; ``target`` first), else
    # ``target`` (tests/soak/driver.py, Soak._aimed)
    aim: str = ""

    def describe(self) -> str:
        who = {PRODUCER: "producer", REDIS: "redis"}.get(self.target, f"worker{self.target}")
        extra = f" for {self.duration:.1f}s" if self.duration else ""
        aim = f" (aimed at a {self.aim} run)" if self.aim else ""
        return f"t={self.at:6.1f}s {self.kind} {who}{extra}{aim}"


def make_plan(
    seed: int,
    seconds: float,
    workers: int,
    dead_timeout: float = 3.0,
    socket_timeout: float = 2.0,
    gap: tuple[float, float] = (2.0, 8.0),
) -> list[Fault]:
    """Faults every ``gap`` seconds (uniform), from ``gap[0]`` until ``seconds``. Half the
    worker faults (SIGKILL, SIGTERM, SIGSTOP) are aimed at a deduplicated or an iterable run
    (``Fault.aim``; of each kind the 1st, 5th, .. at a deduplicated one, the 2nd, 6th, .. at an
    iterable one, so that even a short soak aims both): their checkers judge what a fault does
    to a run going on, and the load alone leaves few of those on a worker picked at random."""
    rng = random.Random(seed)
    kinds, weights = list(KINDS), list(KINDS.values())
    plan: list[Fault] = []
    worker_faults: Counter[str] = Counter()
    t = rng.uniform(*gap)
    while t < seconds:
        kind = rng.choices(kinds, weights)[0]
        target = rng.randrange(workers)
        duration, aim = 0.0, ""
        if kind in ("sigkill", "sigterm", "sigstop"):
            aim = AIMS[worker_faults[kind] % len(AIMS)]
            worker_faults[kind] += 1
        if kind == "sigstop":
            # half of them shorter than the dead timeout (the pool must survive), half longer
            duration = (
                rng.uniform(0.3, dead_timeout * 0.7)
                if rng.random() < 0.5
                else (rng.uniform(dead_timeout * 1.5, dead_timeout * 3))
            )
        elif kind == "redis_restart":
            target, duration = REDIS, rng.uniform(0.5, 3.0)
        elif kind in ("reset", "delay", "blackhole"):
            if rng.random() < 0.25:
                target = PRODUCER
            if kind == "delay":
                duration = socket_timeout + rng.uniform(0.5, 2.0)
            elif kind == "blackhole":
                duration = 3.0
        plan.append(Fault(round(t, 3), kind, target, round(duration, 3), aim))
        t += rng.uniform(*gap)
    return plan


def plan_digest(plan: list[Fault]) -> str:
    """A short fingerprint of a plan: equal digests, equal schedules."""
    return hashlib.sha256(repr(plan).encode()).hexdigest()[:12]


def plan_summary(plan: list[Fault]) -> dict[str, int]:
    return dict(sorted(Counter(f.kind for f in plan).items()))
