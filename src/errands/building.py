"""A job built from an enqueue call's arguments, every option checked: what ``Enqueuer.enqueue``
stores, and what an outbox row (written now, enqueued later by the relay) holds. Pure: no I/O."""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import orjson

from .backoff import RetryOptions
from .checks import function_instead, seconds
from .clock import due_time
from .handlers import check_priority
from .job import Job
from .limits import check_partition
from .serialization import non_finite
from .store.keys import check_job_id, check_job_name

__all__ = [
    "build_job",
    "build_many",
    "forget_drawn_ids",
    "plain_job",
    "random_id",
    "unique_after_edit",
    "unique_digest",
]

_IDS: list[str] = []  # random job ids drawn ahead (random_id)


def forget_drawn_ids() -> None:
    """(In a forked child) The ids the parent drew ahead dropped: a child must not hand out its
    parent's (each would be acknowledged to one process and stored for the other)."""
    _IDS.clear()


os.register_at_fork(after_in_child=forget_drawn_ids)


def build_job(
    name: str,
    args: Mapping[str, Any] | None,
    now: float,
    new_id: str | None = None,
    *,
    delay: float | timedelta | None = None,
    at: datetime | None = None,
    priority: int = 0,
    retry: RetryOptions | None = None,
    meta: Mapping[str, Any] | None = None,
    job_id: str | None = None,
    timeout: float | timedelta | None = None,
    partition: str | None = None,
) -> Job:
    """The job an ``enqueue(name, args, **options)`` at ``now`` stores, every option checked
    (also for an outbox row, written now and enqueued later). Pure: no I/O. ``new_id`` is the id
    of a job given no ``job_id`` (a random one by default)."""
    check_job_name(name if type(name) is str else _not_a_string(name))
    if job_id is not None:
        check_job_id(job_id)
    args = _args(name, args)
    run_at = due_time(now, delay, at) if delay is not None or at is not None else None
    if retry is not None and not isinstance(retry, RetryOptions):
        raise TypeError(f"retry must be a RetryOptions(...), got {type(retry).__name__}")
    if meta is not None and not isinstance(meta, Mapping):
        raise TypeError(f"meta must be a dict, got {type(meta).__name__}")
    return Job(
        name,
        args,
        id=job_id if job_id is not None else new_id or random_id(),
        enqueued_at=now,
        priority=check_priority(priority),
        retry=retry.to_dict() if retry else None,
        meta=dict(meta) if meta else None,
        run_at=run_at if run_at is not None and run_at > now else None,
        timeout=None if timeout is None else seconds("timeout", timeout, zero=False),
        partition=check_partition(partition) if partition is not None else None,
    )


def random_id() -> str:
    """A random job id: 32 hex digits (128 bits of ``os.urandom``), drawn 64 at a time (one
    system call per 64 enqueues instead of one each). ``list.pop`` and ``extend`` are atomic,
    so threads never share one."""
    try:
        return _IDS.pop()
    except IndexError:
        hexes = os.urandom(16 * 64).hex()
        fresh = [hexes[i : i + 32] for i in range(0, 64 * 32, 32)]
        mine = fresh.pop()
        _IDS.extend(fresh)
        return mine


def _not_a_string(name: Any) -> Any:
    """(a job name that is not a string: the error path) A function given instead of its name
    (``enqueue(send_email, {...})``) is refused saying what to pass; anything else is returned
    for ``check_job_name`` to refuse."""
    if callable(name):
        raise ValueError(f"invalid job name {name!r}: {function_instead(name)}")
    return name


def plain_job(
    name: str,
    args: Mapping[str, Any] | None,
    now: float,
    new_id: str,
    checked: set[str],
    share: bool = False,
) -> Job:
    """``build_job(name, args, now, new_id)`` (no option given), a name in ``checked`` taken as
    checked (``enqueue_many`` matches each of its names against the rule once, not each job's).
    ``share``: a dict of args is the job's own, not copied (see ``build_many``)."""
    if type(name) is not str or name not in checked:
        if len(checked) >= 1000:  # (a set kept by an Enqueuer: bounded)
            checked.clear()
        checked.add(check_job_name(name if type(name) is str else _not_a_string(name)))
    if not share or type(args) is not dict:
        args = _args(name, args)
    return Job(name, args, id=new_id, enqueued_at=now)


def _args(name: str, args: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of a job's args (a dict; None for none)."""
    if type(args) is dict:
        return args.copy()
    if args is None:
        return {}
    if not isinstance(args, Mapping):
        raise TypeError(f"args of job {name!r} must be a dict, got {type(args).__name__}")
    return dict(args)


Drawn = Callable[[int, str], bool]  # (index of a job, its id): whether that id was drawn for it
Built = tuple[list[Job], list[bool], Drawn]  # build_many's: jobs, plain flags, the drawn ids' test


def build_many(
    items: Sequence[Sequence[Any]], now: float, *, plain: bool, share: bool = False
) -> Built:
    """The jobs of ``enqueue_many``'s items (``(name, args)`` or ``(name, args, options)``)
    at ``now``, random ids drawn at once, for each whether it is plain (built from a
    ``(name, args)`` tuple, when ``plain``: see ``PlainEnvelopes``), and a test of whether
    job i's id is the one drawn for it (a job given no ``job_id``): asked of the jobs found
    already there only, not a set of every job's id built per call. ``share``: a job of a
    ``(name, args)`` item holds the args dict given, not a copy (no enqueue middleware can
    change it: one dict less per job, docs/enqueueing.md)."""
    hexes = os.urandom(16 * len(items)).hex()
    checked: set[str] = set()  # the names checked
    jobs: list[Job] = []
    flags: list[bool] = []
    for i, item in enumerate(items):
        new_id = hexes[32 * i : 32 * i + 32]  # the id of a job given no job_id
        try:
            if type(item) is tuple and len(item) == 2:
                name, args = item
                if share and type(args) is dict and type(name) is str and name in checked:
                    jobs.append(Job(name, args, id=new_id, enqueued_at=now))  # (plain_job's)
                else:
                    jobs.append(plain_job(name, args, now, new_id, checked, share))
                flags.append(plain)
                continue
            name, args, options = _item(item)
            jobs.append(build_job(name, args, now, new_id, **options))
            flags.append(False)
        except (TypeError, ValueError) as exc:
            if type(exc) not in (TypeError, ValueError):
                raise
            raise type(exc)(f"enqueue_many item {i}: {exc}") from None

    def drawn(i: int, job_id: str) -> bool:
        return job_id == hexes[32 * i : 32 * i + 32]

    return jobs, flags, drawn


def kept_built(ran: Sequence[tuple[str, Job | None]], drawn: Drawn) -> Built:
    """``build_many``'s answer after the enqueue middleware (``ran``: each job's id before it,
    and the job it gave back, None: dropped; in the items' order): the jobs kept, none plain,
    and the test of the ids drawn still trusted (by id: the kept jobs' indices differ). A job's
    id counts as drawn only if the middleware left it the id drawn for that very job and no
    other job of the call carries it (a middleware may give one job another's id: the call
    stores it once, and the other job's ``existed`` is True)."""
    kept = [job for _, job in ran if job is not None]
    carried = Counter(job.id for job in kept)
    trusted = {
        job.id
        for i, (own, job) in enumerate(ran)
        if job is not None and job.id == own and drawn(i, own) and carried[own] == 1
    }
    return kept, [False] * len(kept), lambda _, job_id: job_id in trusted


MANY_OPTIONS = ("delay", "at", "priority", "retry", "meta", "job_id", "timeout", "partition")


def _item(item: Any) -> tuple[Any, Any, Mapping[str, Any]]:
    """An ``enqueue_many`` item's name, args and options, its shape and option names checked."""
    if not isinstance(item, tuple | list) or len(item) not in (2, 3):
        shown = f"{type(item).__name__} {item!r:.60}"
        raise TypeError(f"expected (name, args) or (name, args, options), got {shown}")
    if len(item) == 2:
        return item[0], item[1], {}
    options = item[2]
    if not isinstance(options, Mapping):
        raise TypeError(f"options must be a dict, got {type(options).__name__}")
    for option in options:
        if option not in MANY_OPTIONS:
            only = "; dedup= is enqueue()'s only" if option == "dedup" else ""
            raise TypeError(
                f"unknown option {option!r} (enqueue_many takes {', '.join(MANY_OPTIONS)}{only})"
            )
    return item[0], item[1], options


def unique_digest(name: str, value: Any) -> str:
    """Stable digest of (name, args-or-key): key order in dicts does not matter. A NaN or an
    infinity is refused (orjson writes each as null: nan, inf and -inf would be one key)."""
    try:
        data = orjson.dumps([name, value], option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    except TypeError as exc:
        raise TypeError(f"unique key of job {name!r} is not JSON-serializable: {exc}") from None
    if b"null" in data and (where := non_finite(value, "")) is not None:
        raise TypeError(
            f"unique key of job {name!r} is not JSON-serializable: {where} is not a finite "
            "number (JSON has no NaN or Infinity)"
        )
    return hashlib.sha256(data).hexdigest()[:32]


def unique_after_edit(name: str, env: dict[str, Any], args: Mapping[str, Any]) -> tuple[str, str]:
    """The unique digests (old, new) of a stored job (envelope ``env``) whose args become
    ``args`` (``Client.update_job``), its envelope's ``u`` set to the new one; ``("", "")``
    unless its digest is of its args (``enqueue_unique`` without ``key=``): a key's stays."""
    held = env.get("u")
    if not held or held != unique_digest(name, env.get("a", {})):
        return "", ""
    env["u"] = unique_digest(name, dict(args))
    return held, env["u"]
