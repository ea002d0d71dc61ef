"""Admin commands of the CLI: ``inspect``, ``dead``, ``pause``/``unpause``, ``cancel``,
``destroy``, ``enqueue``, ``edit``. Tables on a terminal, ``--json`` for scripts; clear errors,
non-zero exits."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import re
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson

from ..admin.client import Client
from ..admin.jobinfo import QueueInfo
from ..checks import seconds
from ..enqueuer import Enqueuer
from ..errors import ErrandsError, JobNotFoundError
from ..store.connection import check
from ..store.keyrepair import repair_hint
from ..store.served import served_names, unserved_message
from .hints import HINT_ERRORS, empty_namespace_hint, served_elsewhere
from .inputs import json_args, require_job_type
from .target import BAD_INPUT, Target, add_target_options, refuse

__all__ = ["add_admin_commands"]

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_delay(text: str) -> float:
    """``90``, ``90s``, ``5m``, ``1h30m`` -> seconds."""
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise ErrandsError(f"invalid duration {text!r} (examples: 30s, 5m, 1h30m)")
    return total


def _common(p: argparse.ArgumentParser) -> None:
    add_target_options(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")


def add_admin_commands(sub: Any) -> None:
    inspect = sub.add_parser("inspect", help="look at queues, jobs, pools and sets")
    inspect.add_argument(
        "what",
        choices=[
            "queues",
            "workers",
            "pools",
            "scheduled",
            "retry",
            "dead",
            "cancelled",
            "history",
            "job",
            "counts",
        ],
    )
    inspect.add_argument("id", nargs="?", help="job id (for 'job')")
    inspect.add_argument("--page", type=int, default=1)
    inspect.add_argument("--job-name", default=None, help="filter history by job name")
    _common(inspect)
    inspect.set_defaults(func=_run(_inspect))
    dead = sub.add_parser("dead", help="retry or delete dead jobs")
    dead.add_argument("action", choices=["retry", "delete"])
    dead.add_argument("id", nargs="?")
    dead.add_argument("--all", action="store_true")
    _common(dead)
    dead.set_defaults(func=_run(_dead))
    for name, help_ in (
        ("pause", "stop fetching a job name"),
        ("unpause", "resume a job name"),
        ("cancel", "cancel a job by id"),
    ):
        p = sub.add_parser(name, help=help_)
        p.add_argument("target")
        if name != "cancel":
            p.add_argument("--force", action="store_true", help=f"{name} a name no pool knows")
        _common(p)
        p.set_defaults(func=_run(_simple), action=name)
    gone = sub.add_parser("destroy", help="remove every trace of a job, wherever it is")
    gone.add_argument("id")
    gone.add_argument(
        "--wait",
        type=float,
        default=None,
        help="seconds to wait for a running job's pool to drop it",
    )
    _common(gone)
    gone.set_defaults(func=_run(_destroy))
    enq = sub.add_parser("enqueue", help="enqueue a job")
    enq.add_argument("name")
    enq.add_argument("--args", default="{}", help="JSON object of arguments")
    enq.add_argument("--in", dest="delay", default=None, help="delay, e.g. 30s, 5m, 1h30m")
    enq.add_argument("--priority", type=int, default=0)
    _common(enq)
    enq.set_defaults(func=_run(_enqueue))
    upd = sub.add_parser("edit", help="give a waiting or dead job new args and/or priority")
    upd.add_argument("id")
    upd.add_argument("--args", default=None, help="JSON object of new arguments")
    upd.add_argument("--priority", type=int, default=None)
    _common(upd)
    upd.set_defaults(func=_run(_edit))


def _run(fn: Callable[[Client, argparse.Namespace], Awaitable[int]]) -> Callable[..., int]:
    def sync(args: argparse.Namespace) -> int:
        target = Target.resolve(args)
        args.target_where, args.namespace = target.where, target.namespace

        async def main() -> int:
            client = target.client()
            try:
                await check(client.redis, target.url)
                return await fn(client, args)
            finally:
                await client.aclose()

        try:
            return asyncio.run(main())
        except JobNotFoundError as exc:
            print(f"errands: {exc}", file=sys.stderr)
            return 1
        except BAD_INPUT as exc:
            return refuse(exc)

    return sync


def _emit(
    args: argparse.Namespace, rows: Sequence[Any], columns: Sequence[str], extra: str = ""
) -> None:
    data = [_as_dict(r) for r in rows]
    if args.json:
        sys.stdout.write(orjson.dumps(data, default=_default).decode() + "\n")
        return
    print(args.target_where)  # which server and namespace the table is about
    print(table([[_cell(d.get(c)) for c in columns] for d in data], columns))
    if extra:
        print(extra)


def _as_dict(row: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(row) and not isinstance(row, type):
        return dataclasses.asdict(row)
    return dict(row)


def _default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise TypeError


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and value > 1e9:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))
    if isinstance(value, float):
        return f"{value:.3g}"
    text = orjson.dumps(value).decode() if isinstance(value, dict | list) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def table(rows: Sequence[Sequence[str]], columns: Sequence[str]) -> str:
    """A plain aligned text table."""
    if not rows:
        return "(none)"
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    line = "  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))
    body = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join([line, *body])


async def _inspect(client: Client, args: argparse.Namespace) -> int:
    what = args.what
    if what == "job":
        await _inspect_job(client, args)
    elif what == "counts":
        counts = await client.count_by_status()
        _emit(args, [{"status": k, "count": v} for k, v in counts.items()], ["status", "count"])
    elif what == "queues":
        await _inspect_queues(client, args)
    elif what == "pools":
        columns = [
            "id",
            "host",
            "pid",
            "concurrency",
            "busy",
            "last_beat",
            "quiet_since",
            "job_names",
        ]
        _emit(args, await client.worker_pools(), columns)
    elif what == "workers":
        columns = ["pool_id", "job_name", "job_id", "started_at", "checkin", "args"]
        _emit(args, await client.workers(), columns)
    elif what == "history":
        hist = await client.history(args.page, args.job_name)
        _emit(
            args,
            hist.items,
            ["finished_at", "name", "id", "status", "attempt", "args"],
            f"page {hist.page} of {hist.pages} ({hist.total} attempts)",
        )
    else:
        await _inspect_set(client, args)
    return 0


async def _inspect_job(client: Client, args: argparse.Namespace) -> None:
    if not args.id:
        raise ValueError("inspect job needs a job id")
    info = await client.job(args.id)
    if info is None:
        raise JobNotFoundError.for_id(args.id)
    data = info.to_dict()
    if args.json:
        sys.stdout.write(orjson.dumps(data, default=_default).decode() + "\n")
    else:
        print(args.target_where)
        print(job_text(data))


async def _inspect_queues(client: Client, args: argparse.Namespace) -> None:
    queues = await client.queues()
    if not queues and not args.json:
        print(args.target_where)
        print(await empty_namespace_hint(client))
        return
    rows: list[Any] = queues if args.json else [_queue_row(q) for q in queues]
    columns = ["name", "queued", "scheduled", "retrying", "running", "paused"]
    _emit(args, rows, [*columns, "max_concurrency", "latency", "served"])
    unserved = [q.name for q in queues if q.served is False]
    if unserved and not args.json:
        elsewhere = await served_elsewhere(client, unserved)
        print(f"no running pool serves: {', '.join(unserved)}{elsewhere}")


async def _inspect_set(client: Client, args: argparse.Namespace) -> None:
    """A page of the scheduled, retry, dead or cancelled jobs."""
    lister = {
        "scheduled": client.scheduled_jobs,
        "retry": client.retry_jobs,
        "dead": client.dead_jobs,
        "cancelled": client.cancelled_jobs,
    }[args.what]
    page = await lister(args.page)
    rows = [{**j.to_dict(), "error": (j.error or {}).get("error")} for j in page.items]
    _emit(
        args,
        rows,
        ["id", "name", "fails", "due_at", "finished_at", "error", "args"],
        f"page {page.page} of {page.pages} ({page.total} jobs)",
    )


def job_text(data: dict[str, Any]) -> str:
    """``inspect job`` on a terminal: one field a line, times as dates, the last error as its
    message and its traceback as it was printed (not a JSON string)."""
    lines = []
    error = data.get("error")
    for key, value in data.items():
        if key == "error" and isinstance(error, dict):
            continue
        if key == "progress" and isinstance(value, dict):
            lines.append(f"{key:>12}: {progress_text(value)}")
            continue
        lines.append(f"{key:>12}: {_cell(value)}")
    if isinstance(error, dict):
        attempt = error.get("attempt")
        lines.append(
            f"{'error':>12}: {error.get('error')}" + (f" (attempt {attempt})" if attempt else "")
        )
        tb = error.get("traceback")
        if isinstance(tb, str) and tb.strip():
            lines.append(f"{'traceback':>12}:")
            lines.extend("    " + line for line in tb.rstrip().splitlines())
    return "\n".join(lines)


def progress_text(progress: dict[str, Any]) -> str:
    """An iterable job's checkpoint on one line: items done, cursor, run time, when written."""
    runtime = progress.get("runtime")
    ran = f"{runtime:.1f}s" if isinstance(runtime, int | float) else "-"
    return (
        f"{progress.get('done', 0)} items done, cursor {_cell(progress.get('cursor'))}, "
        f"ran {ran}, checkpoint at {_cell(progress.get('at'))}"
    )


def _queue_row(q: QueueInfo) -> dict[str, str | int]:
    """A queue as a table row: units on the latency, "no limit" rather than 0, served or not
    ("?": the pools' registry could not be read, its warning logged)."""
    return {
        **dataclasses.asdict(q),
        "paused": "yes" if q.paused else "no",
        "max_concurrency": q.max_concurrency or "no limit",
        "latency": f"{q.latency:.3g}s" if q.queued else "-",
        "served": "?" if q.served is None else "yes" if q.served else "NO",  # (None: unread)
    }


async def _dead(client: Client, args: argparse.Namespace) -> int:
    if args.all == bool(args.id):
        raise ValueError("give a job id or --all")
    if args.all:
        fn = client.retry_all_dead_jobs if args.action == "retry" else client.delete_all_dead_jobs
        n = await fn()
        _say(args, f"{args.action} {n} dead jobs", {"action": args.action, "count": n})
        return 0
    one = client.retry_dead_job if args.action == "retry" else client.delete_dead_job
    if not await one(args.id):
        raise JobNotFoundError(f"no dead job {args.id!r}")
    _say(args, f"{args.action} {args.id}: done", {"action": args.action, "id": args.id})
    return 0


def _say(args: argparse.Namespace, message: str, data: dict[str, Any]) -> None:
    """The outcome of an action: a line of text, or a JSON object with ``--json``."""
    print(orjson.dumps(data).decode() if args.json else message)


async def _simple(client: Client, args: argparse.Namespace) -> int:
    if args.action == "pause":
        await require_job_type(client, args.target, args.force, "pauses it")
        await client.pause(args.target)
        _say(args, f"paused {args.target}", {"paused": args.target})
    elif args.action == "unpause":
        if args.target not in await client.paused():  # (a paused name is known)
            await require_job_type(client, args.target, args.force, "unpauses it")
        await client.unpause(args.target)
        _say(args, f"unpaused {args.target}", {"unpaused": args.target})
    else:
        outcome = await client.cancel(args.target)
        _say(args, f"cancel {args.target}: {outcome}", {"id": args.target, "outcome": outcome})
    return 0


async def _destroy(client: Client, args: argparse.Namespace) -> int:
    try:
        found = await client.destroy(args.id, wait=args.wait)
    except TimeoutError as exc:  # (its pool drops it later: said so, exit 1)
        print(f"errands: {exc}", file=sys.stderr)
        return 1
    if not found:
        raise JobNotFoundError.for_id(args.id)
    _say(args, f"destroyed {args.id}", {"id": args.id, "destroyed": True})
    return 0


async def _edit(client: Client, args: argparse.Namespace) -> int:
    payload = json_args(args.args) if args.args is not None else None
    info = await client.update_job(args.id, args=payload, priority=args.priority)
    summary = {"id": info.id, "status": info.status, "args": info.args, "priority": info.priority}
    print(orjson.dumps(summary).decode() if args.json else f"{info.id}: edited ({info.status})")
    return 0


async def _enqueue(client: Client, args: argparse.Namespace) -> int:
    payload = json_args(args.args)
    delay = seconds("--in", parse_delay(args.delay)) if args.delay is not None else None
    enqueuer = Enqueuer(client.redis, namespace=args.namespace, strict=None)
    job = await enqueuer.enqueue(args.name, payload, delay=delay, priority=args.priority)
    assert job is not None
    print(orjson.dumps({"id": job.id}).decode() if args.json else job.id)
    try:  # (the job is stored: a failed lookup for a warning must not say it was not)
        served = await served_names(client.redis, client.keys, repair_hint)
    except HINT_ERRORS as exc:
        print(f"errands: warning: {exc}; the job is stored", file=sys.stderr)
        return 0
    if args.name not in served:
        message = unserved_message(args.name, served, args.namespace)
        print(f"errands: warning: {message}; the job waits until one does", file=sys.stderr)
    return 0
