"""Every Redis key errands uses, built in one place.

All keys of a namespace share the ``{namespace}`` hash tag so that they live in one Redis
Cluster slot and every Lua script can be given all of its keys in ``KEYS``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Keys"]


def _check_part(kind: str, value: str) -> str:
    if not value:
        raise ValueError(f"{kind} must be a non-empty string")
    if any(c in value for c in "{}\n\r\x00"):
        raise ValueError(f"{kind} {value!r} must not contain braces, newlines or NUL")
    return value


@dataclass(frozen=True)
class Keys:
    """Key names for one namespace. Pure: no I/O."""

    namespace: str
    prefix: str = field(init=False)

    def __post_init__(self) -> None:
        _check_part("namespace", self.namespace)
        object.__setattr__(self, "prefix", "errands:{" + self.namespace + "}:")

    # -- namespace-wide structures ------------------------------------------------------------
    @property
    def jobs(self) -> str:
        """HASH job id -> encoded job envelope."""
        return self.prefix + "jobs"

    @property
    def priorities(self) -> str:
        """HASH job id -> per-job priority (only for jobs whose priority is not 0)."""
        return self.prefix + "prio"

    @property
    def seq(self) -> str:
        """Counter giving queue entries their FIFO order."""
        return self.prefix + "seq"

    @property
    def names(self) -> str:
        """SET of every job name ever enqueued in this namespace."""
        return self.prefix + "names"

    @property
    def paused(self) -> str:
        """SET of paused job names."""
        return self.prefix + "paused"

    @property
    def running(self) -> str:
        """HASH job name -> number of jobs of that name running in any pool."""
        return self.prefix + "running"

    @property
    def limits(self) -> str:
        """HASH job name -> max_concurrency as registered by the pools (for inspection)."""
        return self.prefix + "limits"

    @property
    def dead(self) -> str:
        """ZSET job id -> time (ms) the job died."""
        return self.prefix + "dead"

    @property
    def errors(self) -> str:
        """HASH job id -> last error of the job (JSON)."""
        return self.prefix + "errors"

    @property
    def recoveries(self) -> str:
        """HASH job id -> how often the job was taken back from a dead pool."""
        return self.prefix + "recov"

    @property
    def unique(self) -> str:
        """HASH unique digest -> id of the job holding the lock."""
        return self.prefix + "uniq"

    @property
    def unique_of_job(self) -> str:
        """HASH job id -> unique digest the job holds."""
        return self.prefix + "uniqjob"

    @property
    def unique_expiry(self) -> str:
        """ZSET unique digest -> time (ms) the lock expires (24 h safety net)."""
        return self.prefix + "uniqexp"

    @property
    def pools(self) -> str:
        """ZSET pool id -> time (ms, Redis clock) of its last heartbeat."""
        return self.prefix + "pools"

    @property
    def idle(self) -> str:
        """SET of pools waiting for work (enqueue publishes a wake-up only when non-empty)."""
        return self.prefix + "idle"

    @property
    def stats(self) -> str:
        """HASH of namespace-wide counters (processed, failed, dead, ...)."""
        return self.prefix + "stats"

    @property
    def wake_channel(self) -> str:
        """Pub/sub channel on which idle pools are woken."""
        return self.prefix + "wake"

    # -- per job name -------------------------------------------------------------------------
    def queue(self, name: str) -> str:
        """ZSET of ready job ids of one job name, ordered by priority then FIFO."""
        return self.prefix + "q:" + _check_part("job name", name)

    def scheduled(self, name: str) -> str:
        """ZSET job id -> due time (ms) of jobs enqueued with a delay."""
        return self.prefix + "sched:" + _check_part("job name", name)

    def retry(self, name: str) -> str:
        """ZSET job id -> due time (ms) of failed jobs waiting to be retried."""
        return self.prefix + "retry:" + _check_part("job name", name)

    # -- per pool -----------------------------------------------------------------------------
    def in_progress(self, pool_id: str) -> str:
        """ZSET "id:name" -> start time (ms) of the jobs a pool runs now."""
        return self.prefix + "ip:" + _check_part("pool id", pool_id)

    def pool_info(self, pool_id: str) -> str:
        """STRING: JSON description of a pool (host, pid, started, concurrency, job names)."""
        return self.prefix + "pool:" + _check_part("pool id", pool_id)
