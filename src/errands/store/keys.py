"""Every Redis key errands uses, built in one place. All keys of a namespace share the
``{namespace}`` hash tag: they live in one Redis Cluster slot, each script gets them in KEYS."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .keyparts import NAME_RULE, check_job_id, check_job_name
from .keyparts import check_part as _check_part

__all__ = ["NAME_RULE", "Keys", "check_job_id", "check_job_name"]


@dataclass(frozen=True)
class Keys:
    """Key names for one namespace. Pure: no I/O."""

    namespace: str
    prefix: str = field(init=False)
    # ``in_progress``, ``handoff``, ``handoff_armed`` but the pool id (lib/handoff.lua adds it)
    pool_prefixes: tuple[str, str, str] = field(init=False)

    def __post_init__(self) -> None:
        _check_part("namespace", self.namespace)
        p = "errands:{" + self.namespace + "}:"
        object.__setattr__(self, "prefix", p)
        object.__setattr__(self, "pool_prefixes", (p + "ip:", p + "ho:", p + "hoarm:"))

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
        """HASH job name -> max_concurrency the pools apply (code or run time; inspection)."""
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
    def dedup(self) -> str:
        """HASH dedup key ("<job name>:<key>") -> id of the job owning it (docs/dedup.md)."""
        return self.prefix + "dedup"

    @property
    def dedup_of_job(self) -> str:
        """HASH job id -> its dedup mode letter and dedup key (the owner's side of the lock)."""
        return self.prefix + "dedupjob"

    @property
    def dedup_next(self) -> str:
        """HASH dedup key -> id of the rerun waiting for its owner to end (``rerun_latest``)."""
        return self.prefix + "dedupnext"

    @property
    def dedup_reruns(self) -> str:
        """ZSET job id -> time (ms) it began waiting: the reruns waiting for their key's owner."""
        return self.prefix + "dedupreruns"

    def dedup_window(self, key: str) -> str:
        """STRING with a TTL: the job accepted in the throttle window of a "<name>:<key>"."""
        return self.prefix + "dedupwin:" + _check_part("dedup key", key)

    @property
    def pools(self) -> str:
        """ZSET pool id -> ms (Redis clock) of its last heartbeat: the pools and their leases."""
        return self.prefix + "pools"

    @property
    def quiet_requests(self) -> str:
        """HASH pool id -> "quiet:<ms>" or "resume:<ms>": the latest remote request to a pool."""
        return self.prefix + "quietreq"

    @property
    def retired(self) -> str:
        """ZSET pool id -> ms (Redis clock) it was reaped, until reapers drain its jobs."""
        return self.prefix + "retired"

    @property
    def attempts(self) -> str:
        """HASH job id -> "<pool id>:<token>": the attempt running it (acks, settles are fenced)."""
        return self.prefix + "att"

    @property
    def attempt_seq(self) -> str:
        """Counter giving each fetch its attempt token."""
        return self.prefix + "attseq"

    @property
    def ended(self) -> str:
        """ZSET job id -> time (ms) its life ended: tombstones (a re-sent enqueue adds nothing)."""
        return self.prefix + "ended"

    @property
    def idle(self) -> str:
        """SET of pools waiting for work (broadcast wake-ups are published only when non-empty)."""
        return self.prefix + "idle"

    def idle_for(self, name: str) -> str:
        """ZSET pool id -> -deadline (ms): the idle pools serving ``name``; an enqueue wakes one."""
        return self.prefix + "idle:" + _check_part("job name", name)

    @property
    def stats(self) -> str:
        """HASH of namespace-wide counters (processed, failed, dead, ...)."""
        return self.prefix + "stats"

    @property
    def cancelled(self) -> str:
        """ZSET job id -> time (ms) the job was cancelled (its envelope is kept)."""
        return self.prefix + "cancelled"

    @property
    def cancel_requests(self) -> str:
        """HASH job id -> 'cancel' | 'destroy': requests for running jobs, until they settle."""
        return self.prefix + "cancelreq"

    @property
    def checkins(self) -> str:
        """HASH job id -> last checkin (progress) of a running job, JSON."""
        return self.prefix + "checkin"

    @property
    def checkpoints(self) -> str:
        """HASH job id -> last checkpoint (JSON) of an iterable job, while it has an envelope."""
        return self.prefix + "ckpt"

    @property
    def history(self) -> str:
        """ZSET "id:attempt" -> time (ms) the attempt ended."""
        return self.prefix + "hist"

    @property
    def history_data(self) -> str:
        """HASH "id:attempt" -> JSON record of one attempt (outcome, times, envelope)."""
        return self.prefix + "histdata"

    def history_of(self, name: str) -> str:
        """ZSET "id:attempt" -> end time (ms), the attempts of one job name."""
        return self.prefix + "hist:" + _check_part("job name", name)

    def done(self, job_id: str) -> str:
        """STRING with a TTL: the record (and result) of a finished or cancelled job."""
        return self.prefix + "done:" + _check_part("job id", job_id)

    def done_many(self, job_ids: Sequence[str]) -> list[str]:
        """``done`` of each id; the ids checked at once when they are all letters and digits
        (random ids: 0.04 instead of 0.34 us an id, a call of 1,000), else each by ``done``."""
        try:
            plain = all(job_ids) and "".join(job_ids).isalnum()
        except TypeError:  # (an id that is not a str: done says so)
            plain = False
        if not plain:
            return [self.done(i) for i in job_ids]
        head = self.prefix + "done:"
        return [head + i for i in job_ids]

    def reply(self, call: str) -> str:
        """STRING, 10 min TTL (2 min: enqueue_dedup, replace_envelope): a call's reply."""
        return self.prefix + "reply:" + _check_part("call", call)

    def metrics_minute(self, start: int | str) -> str:
        """HASH with a 2 h TTL: activity counters of the minute ``start`` (store/metrics.py)."""
        return self.prefix + f"metrics:m:{start}"

    def metrics_hour(self, start: int | str) -> str:
        """HASH with an 8-day TTL: the same counters for the hour starting at ``start``."""
        return self.prefix + f"metrics:h:{start}"

    @property
    def outbox_relays(self) -> str:
        """HASH relay id -> JSON status of this namespace's outbox relays (store/outbox.py)."""
        return self.prefix + "outbox:relays"

    @property
    def dashboard_revoked(self) -> str:
        """ZSET session id -> expiry (ms) of sessions ended by ``/logout`` (trimmed, with a TTL)."""
        return self.prefix + "dashrevoked"

    @property
    def listening(self) -> str:
        """HASH "*" (a stream listens) or job id (a waiter) -> expiry ms, with a TTL (hub.py)."""
        return self.prefix + "listening"

    @property
    def events_channel(self) -> str:
        """Pub/sub channel of job lifecycle events (published only while someone listens)."""
        return self.prefix + "events"

    @property
    def control_channel(self) -> str:
        """Pub/sub channel telling pools to cancel a running job."""
        return self.prefix + "control"

    @property
    def wake_channel(self) -> str:
        """Pub/sub channel waking every idle pool (``pool_wake_channel``: one pool)."""
        return self.prefix + "wake"

    def pool_wake_channel(self, pool_id: str) -> str:
        """``wake_channel + ":" + pool id`` (so the Lua scripts build it too)."""
        return self.wake_channel + ":" + pool_id

    # -- workflows (see workflows/ and lua/lib/workflows.lua) -----------------------------------
    @property
    def workflow_of(self) -> str:
        """HASH member job id -> run id, until the member's end is handled (once: the HDEL)."""
        return self.prefix + "wfof"

    @property
    def workflows(self) -> str:
        """ZSET run id -> time (ms, Redis clock) the run was stored: the runs to list."""
        return self.prefix + "wfidx"

    @property
    def workflows_expiry(self) -> str:
        """ZSET run id -> ms its linger ends: then it leaves both indexes (lua/wf_trim.lua)."""
        return self.prefix + "wfexp"

    @property
    def workflows_work(self) -> str:
        """ZSET "<status> <node> <cursor> <run>" -> ms: dependents left to walk (wf_cascade)."""
        return self.prefix + "wfwork"

    def workflow(self, run_id: str, part: str = "") -> str:
        """The run's HASH ``wf:<run>``, or ``wf:<run>:<part>`` (open, in, out, nodes, env, res)."""
        key = self.prefix + "wf:" + _check_part("workflow run id", run_id)
        return key + ":" + part if part else key

    # -- periodic schedules --------------------------------------------------------------------
    @property
    def schedules(self) -> str:
        """HASH schedule name -> JSON definition of a runtime schedule (added by a Client)."""
        return self.prefix + "periodic"

    @property
    def code_schedules(self) -> str:
        """HASH schedule name -> JSON definition of a schedule registered in a pool's code."""
        return self.prefix + "periodic_code"

    @property
    def code_schedules_live(self) -> str:
        """ZSET schedule name -> ms until which its code definition is live (a pool registering it
        alike moves it on: lua/schedule_register.lua); past it, it may be defined anew."""
        return self.prefix + "periodic_live"

    def schedule_state(self, name: str) -> str:
        """HASH: last slot (ms), previous/next fire, last job id, counters of one schedule."""
        return self.prefix + "periodic:" + _check_part("schedule name", name)

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

    # -- flow control (see limits/ and lua/lib/limits.lua) ----------------------------------
    @property
    def partitions(self) -> str:
        """HASH job id -> partition, for jobs enqueued with a partition (until their life ends)."""
        return self.prefix + "part"

    @property
    def runtime_limits(self) -> str:
        """HASH job name -> JSON list of limits set at run time (``Client.set_limits``)."""
        return self.prefix + "rlimits"

    @property
    def code_limits(self) -> str:
        """HASH job name -> JSON list of the limits the pools' code registered (inspection)."""
        return self.prefix + "climits"

    @property
    def scan_cursor(self) -> str:
        """HASH job name -> queue score where fetch.lua's scan past partitioned entries goes on."""
        return self.prefix + "pscan"

    def partition_queue(self, name: str) -> str:
        """ZSET (scores 0) "<partition>\\0<queue score>\\0<id>": ready jobs by partition."""
        return self.prefix + "pq:" + _check_part("job name", name)

    def partitions_ready(self, name: str) -> str:
        """ZSET partition -> turn: partitions that may have ready jobs, longest unserved first."""
        return self.prefix + "pready:" + _check_part("job name", name)

    def partitions_waiting(self, name: str) -> str:
        """ZSET partition -> time (ms, Redis clock) its rate limit lets it start a job again."""
        return self.prefix + "pwait:" + _check_part("job name", name)

    def partitions_running(self, name: str) -> str:
        """HASH partition -> jobs of that partition running in any pool (no field when 0)."""
        return self.prefix + "prun:" + _check_part("job name", name)

    def rate_log(self, name: str) -> str:
        """HASH "<per ms>[:<partition>]" -> a rate's last window of starts (ms, Redis clock)."""
        return self.prefix + "prate:" + _check_part("job name", name)

    def rate_expiry(self, name: str) -> str:
        """ZSET field of ``rate_log`` -> time (ms) its log is empty (the field is then dropped)."""
        return self.prefix + "prexp:" + _check_part("job name", name)

    def limiter(self, name: str) -> str:
        """HASH "<per ms>" -> an in-handler limiter's last window of starts (expires with it)."""
        return self.prefix + "limiter:" + _check_part("limiter name", name)

    # -- per pool -----------------------------------------------------------------------------
    def in_progress(self, pool_id: str) -> str:
        """ZSET "id:name" -> start time (ms) of the jobs a pool runs now."""
        return self.pool_prefixes[0] + _check_part("pool id", pool_id)

    def handoff(self, pool_id: str) -> str:
        """LIST: the jobs enqueues handed to an idle pool (lua/lib/handoff.lua)."""
        return self.pool_prefixes[1] + _check_part("pool id", pool_id)

    def handoff_armed(self, pool_id: str) -> str:
        """STRING with a TTL: set by an idle pool's fetch, taken by the one hand-off it allows."""
        return self.pool_prefixes[2] + _check_part("pool id", pool_id)

    def serves(self, pool_id: str) -> str:
        """STRING with a TTL: JSON list of the job names a running pool serves (served.py)."""
        return self.prefix + "serves:" + _check_part("pool id", pool_id)

    def pool_info(self, pool_id: str) -> str:
        """STRING: JSON description of a pool (host, pid, started, concurrency, job names)."""
        return self.prefix + "pool:" + _check_part("pool id", pool_id)
