"""The pages of the dashboard (GET only, never a state change). Each page has a loader that
asks the Client for its data (redacted here, once, for both the HTML page and its JSON twin under
``/api/``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from redis.exceptions import ResponseError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..admin.client import Client
from ..admin.jobinfo import HistoryEntry, JobInfo, JobStatus, Page
from ..errors import WorkflowNotFoundError
from ..store.keys import check_job_name
from ..store.served import unless_unread
from .charts import SPANS, activity_chart, wait_lines
from .drafts import draft
from .filters import Filter, filtered_page
from .guard import wrong_type
from .limitwords import running_limits
from .messages import served_or_none
from .redact import Redactor
from .render import Renderer, chart

__all__ = ["BadRequest", "Missing", "Views"]

log = logging.getLogger("errands.dashboard")
Loader = Callable[[Request], Awaitable[dict[str, Any]]]
STALE_POOL_SECONDS = 30.0
CANCELLABLE = (
    JobStatus.QUEUED,
    JobStatus.SCHEDULED,
    JobStatus.RETRYING,
    JobStatus.IN_PROGRESS,
    JobStatus.WAITING,
)
RETRYABLE = (JobStatus.SCHEDULED, JobStatus.RETRYING, JobStatus.DEAD, JobStatus.CANCELLED)
EDITABLE = (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.RETRYING, JobStatus.DEAD)
SETS = {
    "scheduled": ("Scheduled", "Jobs waiting for their time; soonest first.", "Run now"),
    "retry": ("Retry", "Failed jobs waiting for their next attempt; soonest first.", "Retry now"),
    "dead": ("Dead", "Jobs that failed for good; newest first.", "Retry"),
    "cancelled": ("Cancelled", "Jobs cancelled before they finished; newest first.", "Retry"),
}


class Missing(Exception):
    """A page about something that does not exist (404)."""


class BadRequest(Exception):
    """A query this dashboard cannot answer as asked (400)."""


def page_number(request: Request) -> int:
    """The page asked for, as asked (a page past the end lists nothing, at the cost of the
    sizes of the sets: no clamp needed)."""
    raw = request.query_params.get("page", "1").strip() or "1"
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 9:
        raise BadRequest("page must be a whole number, e.g. page=2")
    return max(int(raw), 1)


def plausible_id(job_id: str) -> bool:
    """Could be the id of a job: printable, no braces (they would leave the hash tag)."""
    return 0 < len(job_id) <= 400 and job_id.isprintable() and not any(c in job_id for c in "{}")


def attempts_made(info: JobInfo | None, recorded: list[HistoryEntry]) -> int:
    """Every attempt of the job, earlier runs included: ``info.attempts`` counts the current
    run only and not an attempt cut short by a cancel, which the history did record (edits,
    also in the history, carry the number of the attempt before them)."""
    counted = info.previous_attempts + info.attempts if info is not None else 0
    numbers = [a.attempt for a in recorded if a.status != "edited"]
    return max([counted, *numbers])


def name_filter(request: Request) -> str | None:
    name = request.query_params.get("name", "").strip()
    if not name:
        return None
    try:
        return check_job_name(name)
    except ValueError:
        raise BadRequest(f"{name[:80]!r} is not a job name") from None


class Views:
    def __init__(self, client: Client, renderer: Renderer, redactor: Redactor) -> None:
        self.client = client
        self.renderer = renderer
        self.redactor = redactor

    def routes(self) -> list[Route]:
        table: list[tuple[str, Loader, str, str]] = [
            ("/", self.overview, "overview.html", "overview"),
            ("/activity", self.activity, "activity.html", "activity"),
            ("/queues", self.queues, "queues.html", "queues"),
            ("/queues/{name:path}", self.queue, "queue.html", "queues"),
            ("/busy", self.busy, "busy.html", "busy"),
            ("/pools", self.pools, "pools.html", "pools"),
            ("/scheduled", self.job_set("scheduled"), "jobs.html", "scheduled"),
            ("/retry", self.job_set("retry"), "jobs.html", "retry"),
            ("/dead", self.job_set("dead"), "jobs.html", "dead"),
            ("/cancelled", self.job_set("cancelled"), "jobs.html", "cancelled"),
            ("/history", self.history, "history.html", "history"),
            ("/schedules", self.schedules, "schedules.html", "schedules"),
            ("/workflows", self.workflows, "workflows.html", "workflows"),
            ("/workflows/{id:path}", self.workflow, "workflow.html", "workflows"),
            ("/jobs/{id:path}", self.job, "job.html", ""),
            ("/redis", self.redis, "redis.html", "redis"),
        ]
        routes = [
            Route("/jobs", self.find_job, methods=["GET"]),
            Route("/api/csrf", self.csrf, methods=["GET"]),
        ]
        for path, loader, template, active in table:
            api_path = "/api" + (path if path != "/" else "/overview")
            routes.append(Route(path, self._html(loader, template, active), methods=["GET"]))
            routes.append(Route(api_path, self._api(loader), methods=["GET"]))
        return routes

    def _html(self, loader: Loader, template: str, active: str) -> Callable[..., Any]:
        async def endpoint(request: Request) -> Response:
            try:
                data = await loader(request)
            except Missing as exc:
                return self.renderer.error(request, 404, str(exc))
            except BadRequest as exc:
                return self.renderer.error(request, 400, str(exc))
            counts = await self._counts()
            return self.renderer.page(request, template, active=active, counts=counts, **data)

        return endpoint

    def _api(self, loader: Loader) -> Callable[..., Any]:
        async def endpoint(request: Request) -> Response:
            try:
                data = await loader(request)
            except Missing as exc:
                return self.renderer.error(request, 404, str(exc))
            except BadRequest as exc:
                return self.renderer.error(request, 400, str(exc))
            data.pop("refresh", None)
            return self.renderer.json(data)

        return endpoint

    async def csrf(self, request: Request) -> Response:
        """The CSRF token for scripts: send it back as ``X-CSRF-Token`` with the cookie."""
        return self.renderer.json({"csrf": request.state.csrf})

    async def find_job(self, request: Request) -> Response:
        """The job with this id, or the jobs whose ids start with it (one: its page)."""
        job_id = request.query_params.get("id", "").strip()
        if not job_id:
            return self.renderer.redirect(request, "/history")
        if not plausible_id(job_id):
            message = "No such job: ids have no braces or control characters."
            return self.renderer.error(request, 404, message)
        if await self.client.job(job_id) is not None or await self.client.history_job(job_id, 1):
            return self.renderer.redirect(request, "/jobs/" + quote(job_id, safe=""))
        ids = await self.client.find_job_ids(job_id)
        if len(ids) == 1:
            return self.renderer.redirect(request, "/jobs/" + quote(ids[0], safe=""))
        if not ids:
            return self.renderer.error(request, 404, f"No job id is or starts with {job_id!r}.")
        counts = await self._counts()
        return self.renderer.page(request, "found.html", counts=counts, prefix=job_id, ids=ids)

    async def _counts(self) -> dict[str, int]:
        """The navigation's counts; none when a key they read holds another type (the pages
        that do not read it are still shown)."""
        try:
            return await self.client.count_by_status()
        except ResponseError as exc:
            if wrong_type(exc) is None:
                raise
            log.warning("dashboard: no counts in the navigation: %s", exc)
            return {}

    # -- loaders ----------------------------------------------------------------------------
    async def overview(self, request: Request) -> dict[str, Any]:
        c = self.client
        counts, stats, points, queues, workers, pools = await asyncio.gather(
            c.count_by_status(),
            c.stats(),
            c.throughput(60, now=c.clock.now()),
            c.queues(),
            unless_unread(c.workers(), c.keys, log),  # (None: the pools' registry unread)
            unless_unread(c.worker_pools(), c.keys, log),
        )
        outbox, limits = await asyncio.gather(c.outbox(), c.limits())
        return {
            "totals": {
                "processed": stats.get("processed", 0),
                "failed": stats.get("failed", 0) + stats.get("dead", 0),
                "dead": counts[JobStatus.DEAD],
                "busy": None if workers is None else len(workers),
                "queued": counts[JobStatus.QUEUED],
                "scheduled": counts[JobStatus.SCHEDULED],
                "retrying": counts[JobStatus.RETRYING],
                "pools": None if pools is None else len(pools),
                "concurrency": None if pools is None else sum(p.concurrency for p in pools),
            },
            "throughput": [{"minute": m, "ended": e, "died": d} for m, e, d in points],
            "chart": chart(points),
            "queues": queues,
            "running_limits": running_limits(queues, limits),
            "workers": self.redactor.each((workers or [])[:10]),
            "unread": None if pools is not None and workers is not None else c.keys.pools,
            "outbox": outbox if outbox.relays else None,  # shown once a relay reports
        }

    async def activity(self, request: Request) -> dict[str, Any]:
        span = request.query_params.get("span", "hour")
        if span not in SPANS:
            raise BadRequest("span must be hour, day or week")
        buckets = await self.client.activity(span)
        return {
            "span": span,
            "buckets": [
                {"start": b.start, "done": b.done, "failed": b.failed, "dead": b.dead,
                 "waits": {n: {"ms": w[0], "started": w[1]} for n, w in b.waits.items()}}
                for b in buckets
            ],
            "chart": activity_chart(buckets, span),
            "waits": wait_lines(buckets, span),
        }  # fmt: skip

    async def queues(self, request: Request) -> dict[str, Any]:
        queues, limits = await asyncio.gather(self.client.queues(), self.client.limits())
        return {"queues": queues, "running_limits": running_limits(queues, limits)}

    async def queue(self, request: Request) -> dict[str, Any]:
        name = request.path_params["name"]
        infos = [q for q in await self.client.queues() if q.name == name]
        if not infos:
            raise Missing(f"No queue named {name!r}.")
        jobs = await self.client.queued_jobs(name, page_number(request))
        limits = (await self.client.limits()).get(name)
        partitions = await self.client.partitions(name)
        return {
            "queue": infos[0],
            "page": self._redacted(jobs),
            "limits": limits,
            "partitions": partitions,
        }

    async def busy(self, request: Request) -> dict[str, Any]:
        return {"workers": self.redactor.each(await self.client.workers())}

    async def pools(self, request: Request) -> dict[str, Any]:
        pools = await self.client.worker_pools()
        now = self.client.clock.now()
        stale = [p.id for p in pools if now - p.last_beat > STALE_POOL_SECONDS]
        return {"pools": pools, "stale": stale}

    def job_set(self, kind: str) -> Loader:
        async def load(request: Request) -> dict[str, Any]:
            lister = {
                "scheduled": self.client.scheduled_jobs,
                "retry": self.client.retry_jobs,
                "dead": self.client.dead_jobs,
                "cancelled": self.client.cancelled_jobs,
            }[kind]
            title, blurb, verb = SETS[kind]
            wanted = Filter(name_filter(request), request.query_params.get("q"))
            number = page_number(request)
            searched = 0
            if wanted:
                page, searched = await filtered_page(lister, self.redactor, number, wanted)
            else:
                page = self._redacted(await lister(number))
            return {
                "kind": kind, "title": title, "blurb": blurb, "verb": verb, "page": page,
                "names": await self.client.job_names(), "name": wanted.name,
                "text": wanted.text or "", "filtered": bool(wanted), "searched": searched,
                "query": wanted.query(),
            }  # fmt: skip

        return load

    async def history(self, request: Request) -> dict[str, Any]:
        wanted = Filter(name_filter(request), request.query_params.get("q"))
        job_id = request.query_params.get("id", "").strip() or None
        names = await self.client.job_names()
        if job_id and not plausible_id(job_id):
            raise BadRequest("not a job id: ids have no braces or control characters")
        found: dict[str, Any] = {"names": names, "name": wanted.name, "text": wanted.text or ""}
        found.update(job_id=job_id, searched=0, query=wanted.query(), filtered=bool(wanted))
        found["starting"] = []  # (ids a job-id prefix starts, when it has no attempts itself)
        if job_id:
            entries = self.redactor.each(await self.client.history_job(job_id))
            if not entries:  # (a prefix, as the header's search takes)
                found["starting"] = await self.client.find_job_ids(job_id)
            return found | {"page": Page(entries[::-1], len(entries), 1, max(1, len(entries)))}
        number = page_number(request)
        if wanted.text:

            async def lister(n: int) -> Page[Any]:
                return await self.client.history(n, wanted.name)

            page, found["searched"] = await filtered_page(lister, self.redactor, number, wanted)
            return found | {"page": page}
        return found | {"page": self._redacted(await self.client.history(number, wanted.name))}

    async def schedules(self, request: Request) -> dict[str, Any]:
        infos = self.redactor.each(await self.client.schedules())
        running = ("queued", "running", "retrying")
        states = {i.name: "RUNNING" if i.last_outcome in running else "IDLE" for i in infos}
        served = await served_or_none(self.client)
        unserved = sorted({i.job_name for i in infos} - served) if served is not None else []
        names = await self.client.job_names()
        return {"schedules": infos, "states": states, "names": names, "unserved": unserved,
                "draft": draft(request)}  # fmt: skip

    async def job(self, request: Request) -> dict[str, Any]:
        job_id = request.path_params["id"]
        if not plausible_id(job_id):
            raise Missing("No such job: job ids have no braces or control characters.")
        info = await self.client.job(job_id) if job_id else None
        attempts = self.redactor.each(await self.client.history_job(job_id)) if job_id else []
        if info is None and not attempts:
            raise Missing(
                f"No job {job_id!r}: never enqueued, destroyed or deleted, or it ended and its "
                "record and history expired."
            )
        shown = self.redactor.job(info) if info is not None else None
        editable = info is not None and info.status in EDITABLE and not info.corrupt
        return {
            "job_id": job_id,
            "job": shown,
            "can_edit": editable,
            # args with a hidden (redacted) value are not offered for editing: sent back, the
            # mask would replace the secret; the form then changes the priority only
            "edit_args": info.args if info and shown and shown.args == info.args else None,
            "attempts": attempts,
            "attempts_made": attempts_made(info, attempts),
            "can_cancel": info is not None and info.status in CANCELLABLE,
            "can_retry": info is not None and info.status in RETRYABLE and not info.corrupt,
        }

    async def workflows(self, request: Request) -> dict[str, Any]:
        return {"runs": await self.client.workflows(limit=200)}

    async def workflow(self, request: Request) -> dict[str, Any]:
        run_id = request.path_params["id"]
        if not plausible_id(run_id):
            raise Missing("No such workflow run: ids have no braces or control characters.")
        handle = self.client.workflow(run_id)
        try:
            status = await handle.status()
        except WorkflowNotFoundError:
            raise Missing(f"No workflow run {run_id!r} (unknown, or its linger is over).") from None
        # members by state and id; their results and errors are on their job pages (redacted)
        nodes = [
            {k: v for k, v in n.__dict__.items() if k not in ("result", "error")}
            for n in status.nodes.values()
        ]
        run = {k: v for k, v in status.__dict__.items() if k not in ("nodes", "callbacks")}
        callbacks = []  # (each with its job's status: None before it is enqueued, or never)
        for kind, name in sorted(status.callbacks.items(), key=lambda c: c[0] != "on_success"):
            info = await self.client.job(job_id := handle.callback_job_id(kind))
            state = info.status if info is not None else None
            callbacks.append({"kind": kind, "name": name, "job_id": job_id, "state": state})
        counts = status.counts()
        return {"run": run, "nodes": nodes, "member_counts": counts, "callbacks": callbacks}

    async def redis(self, request: Request) -> dict[str, Any]:
        return {"info": await self.client.redis_info(), "namespace": self.client.keys.namespace}

    def _redacted(self, page: Page[Any]) -> Page[Any]:
        return Page(self.redactor.each(page.items), page.total, page.page, page.per_page)
