"""The request of the enqueue script (lua/enqueue.lua), and its packing for many jobs at once.

The script takes its jobs as columns: the ids, the envelopes, and one short spec per job
(``"<name index>"``, or ``"<name index> <priority> <due ms> <partition>"`` when one of these is
set). Three arguments and one key per job instead of seven and one: on a call of thousands of
jobs, redis-py's packing of the command (each argument encoded on its own) cost more than
building the jobs, and the script reads its columns with one command per 1,000 jobs.
``enqueue_many`` sends it packed by errands (store/pinned.py: ``BulkEnqueue``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..clock import to_ms
from ..job import Job
from .adminscripts import Arg
from .keys import Keys

__all__ = ["Columns", "columns", "enqueue_request", "job_spec", "one_job_request"]

Columns = tuple[list[str], list[str], list[bytes], list[str]]  # names, ids, envelopes, specs


def job_spec(index: int, priority: int, due_ms: int, partition: str) -> str:
    """One job's spec argument: its name's 1-based index among the call's names, then its
    priority, due time (ms, 0 = now) and partition ('' = none) when one of them is set."""
    if priority or due_ms or partition:
        return f"{index} {priority} {due_ms} {partition}"
    return str(index)


def columns(jobs: Sequence[Job], encode: Callable[[Job], bytes]) -> Columns:
    """The names, ids, envelopes (``encode``) and specs of an ``enqueue`` call of ``jobs``."""
    index: dict[str, int] = {}
    specs = [
        job_spec(index.setdefault(j.name, len(index) + 1), j.priority,
                 to_ms(j.run_at) if j.run_at is not None else 0, j.partition or "")
        for j in jobs
    ]  # fmt: skip
    return list(index), [j.id for j in jobs], [encode(j) for j in jobs], specs


def enqueue_request(
    keys: Keys,
    names: Sequence[str],
    ids: Sequence[str],
    envelopes: Sequence[bytes],
    specs: Sequence[str],
) -> tuple[list[str], list[Arg]]:
    """The KEYS and ARGV of an ``enqueue`` call of these jobs (see lua/enqueue.lua)."""
    k = keys
    keys_ = [k.jobs, k.priorities, k.seq, k.names, k.idle, k.listening, k.ended, k.partitions]
    for name in names:
        keys_ += (k.queue(name), k.scheduled(name))
        keys_ += (k.partition_queue(name), k.partitions_ready(name), k.idle_for(name))
    keys_ += [k.done(i) for i in ids]
    args: list[Arg] = [k.wake_channel, len(ids), k.events_channel, len(names), *names]
    args += ids
    args += envelopes
    args += specs
    return keys_, args


def one_job_request(
    keys: Keys, heads: dict[str, tuple[list[str], list[Arg]]], name: str, row: Sequence[Arg]
) -> tuple[list[str], list[Arg]]:
    """The request of an ``enqueue`` call of one job, ``row`` as for ``Scripts.enqueue`` (name
    index, name, id, envelope, priority, due ms, partition); the same as ``enqueue_request``'s.
    ``heads`` keeps each name's keys and first arguments (up to 1,000 names)."""
    head = heads.get(name)
    if head is None:
        if len(heads) >= 1000:
            heads.clear()
        name_keys, first = enqueue_request(keys, [name], [], [], [])
        first[1] = 1  # the number of jobs
        head = heads[name] = (name_keys, first)
    job_id = str(row[2])
    spec = job_spec(1, int(row[4]), int(row[5]), str(row[6]))
    return [*head[0], keys.done(job_id)], [*head[1], job_id, row[3], spec]
