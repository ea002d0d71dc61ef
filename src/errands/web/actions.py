"""State-changing actions: POST only (the Guard has checked origin and CSRF token before any of
these runs). Each action is served twice: for forms (303 back to the page, with a flash message)
and under ``/api/`` (JSON). Ids and names travel in the body, never in the path."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple
from urllib.parse import quote

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..admin.bulk import act_on_each, gathered, window_for
from ..admin.client import Client
from ..admin.jobinfo import JobInfo, JobStatus, Page
from ..errors import ErrandsError, JobNotFoundError
from ..store.keys import check_job_id, check_job_name
from .drafts import kept
from .messages import FLASH_MOST, cancel_message, error_message, unserved_hint
from .render import Renderer, cookie_header
from .security import (
    SESSION_COOKIE,
    SESSION_SECONDS,
    Settings,
    session_cookie_value,
    session_id,
)
from .sessions import Sessions
from .throttle import Throttle

__all__ = ["Actions"]


class Outcome(NamedTuple):
    message: str
    back: str
    data: Any = None


Action = Callable[[dict[str, str]], Awaitable[Outcome]]
Lister = Callable[[int], Awaitable[Page[JobInfo]]]


def _required(form: dict[str, str], field: str) -> str:
    value = form.get(field, "").strip()
    if not value:
        raise ValueError(f"missing {field!r}")
    return value


def _back(form: dict[str, str], default: str) -> str:
    """Where to go after the action: the form's ``next`` if it is a path of this dashboard."""
    target = form.get("next", "")
    safe = target.startswith("/") and not target.startswith("//") and "\\" not in target
    return target if safe and target.isprintable() and " " not in target else default


class Actions:
    def __init__(
        self,
        client: Client,
        renderer: Renderer,
        settings: Settings,
        throttle: Throttle,
        sessions: Sessions,
    ) -> None:
        self.client = client
        self.renderer = renderer
        self.settings = settings
        self.throttle = throttle
        self.sessions = sessions
        self.window = window_for(client.redis)  # (bulk actions in flight at once)

    def routes(self) -> list[Route]:
        table: dict[str, Action] = {
            "/queues/pause": self.pause,
            "/queues/unpause": self.unpause,
            "/queues/clear": self.clear_queue,
            "/pools/quiet": self.pool_verb("quiet"),
            "/pools/resume": self.pool_verb("resume"),
            "/jobs/cancel": self.cancel,
            "/jobs/retry": self.retry_job,
            "/jobs/delete": self.delete_job,
            "/jobs/edit": self.edit_job,
            "/schedules/add": self.add_schedule,
            "/workflows/cancel": self.cancel_workflow,
            "/schedules/enable": self.schedule_verb("enable"),
            "/schedules/disable": self.schedule_verb("disable"),
            "/schedules/run": self.schedule_verb("run"),
            "/schedules/delete": self.schedule_verb("delete"),
        }
        for kind in ("scheduled", "retry", "dead", "cancelled"):
            for verb in ("retry", "delete", "retry-all", "delete-all"):
                table[f"/{kind}/{verb}"] = self.set_action(kind, verb)
            table[f"/{kind}/bulk"] = self.bulk_action(kind)
        routes = [
            Route("/login", self.login_page, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", self.logout, methods=["POST"]),
        ]
        for path, action in table.items():
            routes.append(Route(path, self._html(action, path), methods=["POST"]))
            routes.append(Route("/api" + path, self._api(action), methods=["POST"]))
        return routes

    def _html(self, action: Action, path: str) -> Callable[[Request], Awaitable[Response]]:
        section = "/" + path.split("/")[1]

        async def endpoint(request: Request) -> Response:
            form: dict[str, str] = request.state.form
            try:
                outcome = await action(form)
            except (ErrandsError, ValueError, LookupError) as exc:
                home = "/" if section == "/jobs" else section
                message = error_message(exc, FLASH_MOST)
                back = kept(path, form, _back(form, home))  # (what was typed, if kept)
                return self.renderer.redirect(request, back, message, "error")
            return self.renderer.redirect(request, _back(form, outcome.back), outcome.message)

        return endpoint

    def _api(self, action: Action) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                outcome = await action(request.state.form)
            except LookupError as exc:
                return self.renderer.error(request, 404, error_message(exc))
            except (ErrandsError, ValueError) as exc:
                return self.renderer.error(request, 400, error_message(exc))
            return self.renderer.json(
                {"ok": True, "message": outcome.message, "data": outcome.data}
            )

        return endpoint

    # -- queues and jobs ---------------------------------------------------------------------
    async def pause(self, form: dict[str, str]) -> Outcome:
        name = _required(form, "name")
        await self.client.pause(name)
        return Outcome(f"Paused {name}.", "/queues")

    async def unpause(self, form: dict[str, str]) -> Outcome:
        name = _required(form, "name")
        await self.client.unpause(name)
        return Outcome(f"Resumed {name}.", "/queues")

    async def clear_queue(self, form: dict[str, str]) -> Outcome:
        """Delete every job waiting on one queue (running, scheduled and retrying ones stay)."""
        name = check_job_name(_required(form, "name"))
        c = self.client

        async def lister(page: int) -> Page[JobInfo]:
            return await c.queued_jobs(name, page)

        # (deleted only while still on the queue: a job fetched since the listing runs on)
        count = await _each(lister, c.delete_queued_job, self.window)
        return Outcome(f"Cleared {name}: {count} jobs deleted.", "/queues/" + quote(name, safe=""))

    def pool_verb(self, verb: str) -> Action:
        """Quiet or resume a running pool (at its next heartbeat: admin/pools.py)."""

        async def act(form: dict[str, str]) -> Outcome:
            pool_id = _required(form, "id")
            call = self.client.quiet_pool if verb == "quiet" else self.client.resume_pool
            changed = await call(pool_id)
            done = f"{verb} requested" if changed else ("quiet" if verb == "quiet" else "not quiet")
            return Outcome(f"Pool {pool_id}: {done}.", "/pools", changed)

        return act

    async def cancel(self, form: dict[str, str]) -> Outcome:
        job_id = _required(form, "id")
        outcome = await self.client.cancel(job_id)
        back = "/jobs/" + quote(job_id, safe="")
        return Outcome(f"{job_id}: {cancel_message(outcome)}.", back, outcome)

    async def cancel_workflow(self, form: dict[str, str]) -> Outcome:
        run_id = check_job_id(_required(form, "id"))
        done = await self.client.workflow(run_id).cancel()
        outcome = "cancelled" if done else "not running"
        back = "/workflows/" + quote(run_id, safe="")
        return Outcome(f"Workflow {run_id}: {outcome}.", back, outcome)

    async def retry_job(self, form: dict[str, str]) -> Outcome:
        job_id = _required(form, "id")
        info = await self.client.job(job_id)
        if info is None:
            raise JobNotFoundError.for_id(job_id)
        c = self.client
        if info.status == JobStatus.DEAD:
            done = await c.retry_dead_job(job_id)
        elif info.status == JobStatus.SCHEDULED:
            done = await c.run_scheduled_now(job_id)
        else:
            done = await c.reschedule(job_id, c.clock.now())
        back = "/jobs/" + quote(job_id, safe="")
        return Outcome(f"Queued {job_id} again." if done else f"{job_id} was not moved.", back)

    async def edit_job(self, form: dict[str, str]) -> Outcome:
        """New args (a JSON object; left empty: kept) and/or priority of a waiting or dead job."""
        job_id = _required(form, "id")
        raw, prio = form.get("args", "").strip(), form.get("priority", "").strip()
        args = _json_object(raw) if raw else None
        try:
            priority = int(prio) if prio else None
        except ValueError:
            raise ValueError(f"priority must be an integer, got {prio!r}") from None
        info = await self.client.update_job(job_id, args=args, priority=priority)
        back = "/jobs/" + quote(job_id, safe="")
        return Outcome(f"Edited {job_id} ({info.status}).", back)

    async def delete_job(self, form: dict[str, str]) -> Outcome:
        job_id = _required(form, "id")
        if not await self.client.destroy(job_id):
            raise JobNotFoundError.for_id(job_id)
        return Outcome(f"Deleted {job_id}.", "/")

    def set_action(self, kind: str, verb: str) -> Action:
        c = self.client
        lister = self._lister(kind)
        action = self._one(kind, verb)
        done_word = "queued" if verb.startswith("retry") else "deleted"

        async def run(form: dict[str, str]) -> Outcome:
            if verb.endswith("-all"):
                if kind == "dead":  # the Client's bulk calls
                    bulk = c.retry_all_dead_jobs if verb == "retry-all" else c.delete_all_dead_jobs
                    count = await bulk()
                else:
                    count = await _each(lister, action, self.window)
                return Outcome(f"{count} {kind} jobs {done_word}.", f"/{kind}", count)
            job_id = _required(form, "id")
            if not await action(job_id):
                raise LookupError(f"no {kind} job {job_id!r}")
            return Outcome(f"{job_id} {done_word}.", f"/{kind}")

        return run

    def _lister(self, kind: str) -> Lister:
        c = self.client
        listers: dict[str, Lister] = {
            "scheduled": c.scheduled_jobs,
            "retry": c.retry_jobs,
            "dead": c.dead_jobs,
            "cancelled": c.cancelled_jobs,
        }
        return listers[kind]

    def _one(self, kind: str, verb: str) -> Callable[[str], Awaitable[bool]]:
        """The action on one job of a set: ``retry`` (run now) or ``delete``."""
        c = self.client
        if verb.startswith("retry"):
            return {
                "scheduled": c.run_scheduled_now,
                "retry": self._retry_now,
                "dead": c.retry_dead_job,
                "cancelled": self._requeue_cancelled,
            }[kind]
        return {
            "scheduled": c.delete_scheduled_job,
            "retry": c.delete_retry_job,
            "dead": c.delete_dead_job,
            "cancelled": c.delete_cancelled_job,  # (only while still cancelled, as the others)
        }[kind]

    def bulk_action(self, kind: str) -> Action:
        """``verb`` (retry or delete) on the jobs whose ids were selected (``ids``: repeated
        form fields, or a JSON list)."""

        async def run(form: dict[str, str]) -> Outcome:
            verb = form.get("verb", "")
            if verb not in ("retry", "delete"):
                raise ValueError("verb must be retry or delete")
            ids = _ids(form.get("ids", ""))
            if not ids:
                raise ValueError("select at least one job")
            action = self._one(kind, verb)
            done = await act_on_each(ids, action, self.window)
            word = "queued" if verb == "retry" else "deleted"
            return Outcome(f"{done} of {len(ids)} selected {kind} jobs {word}.", f"/{kind}", done)

        return run

    async def _requeue_cancelled(self, job_id: str) -> bool:
        info = await self.client.job(job_id)
        if info is None or info.status != JobStatus.CANCELLED:
            return False
        return await self.client.reschedule(job_id, self.client.clock.now())

    async def _retry_now(self, job_id: str) -> bool:
        info = await self.client.job(job_id)
        if info is None or info.status != JobStatus.RETRYING:
            return False
        return await self.client.reschedule(job_id, self.client.clock.now())

    # -- schedules ---------------------------------------------------------------------------
    async def add_schedule(self, form: dict[str, str]) -> Outcome:
        args = _json_object(form.get("args") or "{}")
        name = _required(form, "name")
        periodic = await self.client.add_schedule(
            name,
            _required(form, "job"),
            _required(form, "spec"),
            args,
            tz=form.get("tz", "").strip() or "UTC",
            enabled=form.get("enabled", "") not in ("", "0", "false", "off"),
        )
        but = await unserved_hint(self.client, periodic.job_name)  # (a typo?)
        return Outcome(f"Schedule {periodic.name} added{but}.", "/schedules")

    def schedule_verb(self, verb: str) -> Action:
        async def run(form: dict[str, str]) -> Outcome:
            name = _required(form, "name")
            c = self.client
            if verb == "enable":
                await c.enable_schedule(name)
            elif verb == "disable":
                await c.disable_schedule(name)
            elif verb == "delete":
                if not await c.delete_schedule(name):
                    raise LookupError(f"no schedule named {name!r}")
            else:
                job_id = await c.run_schedule_now(name)
                return Outcome(f"Schedule {name}: job {job_id} enqueued.", "/schedules", job_id)
            return Outcome(f"Schedule {name} {verb}d.", "/schedules")

        return run

    # -- token login -------------------------------------------------------------------------
    async def login_page(self, request: Request) -> Response:
        if not self.settings.token or request.state.user is not None:
            return self.renderer.redirect(request, "/")
        return self.renderer.page(request, "login.html", message="", refresh=0)

    async def login(self, request: Request) -> Response:
        given: str = request.state.form.get("token", "")
        token = self.settings.token
        if not token or not hmac.compare_digest(given.encode(), token.encode()):
            self.throttle.failed(request.state.peer)
            return self.renderer.unauthorized(request, "Wrong token.")
        response = self.renderer.redirect(request, "/")
        value = session_cookie_value(self.settings)
        response.headers.append(
            "set-cookie", cookie_header(request, SESSION_COOKIE, value, SESSION_SECONDS)
        )
        return response

    async def logout(self, request: Request) -> Response:
        """Ends the session for good: its id is revoked server-side, not only the cookie."""
        session = session_id(self.settings, request.cookies.get(SESSION_COOKIE))
        if session is not None:
            await self.sessions.revoke(*session)
        response = self.renderer.redirect(request, "/login" if self.settings.token else "/")
        response.headers.append("set-cookie", cookie_header(request, SESSION_COOKIE, "", 0))
        return response


async def _each(lister: Lister, action: Callable[[str], Awaitable[bool]], window: int) -> int:
    """Apply ``action`` once to each job listed now: every page is read first (``window`` at a
    time), so a job that comes back meanwhile is not acted on twice, and corrupt entries
    (skipped) cannot stop it. Then ``window`` actions at a time, in the listing's order
    (admin/bulk.py: one that raises does not stop the others, its error is raised after)."""
    first = await lister(1)
    pages = [first, *await gathered(range(2, first.pages + 1), lister, window)]
    ids = [job.id for page in pages for job in page.items if not job.corrupt]
    return await act_on_each(list(dict.fromkeys(ids)), action, window)


MAX_BULK = 500


def _json_object(raw: str) -> dict[str, Any]:
    try:
        args = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ValueError('args must be a JSON object, e.g. {"id": 1}') from None
    if not isinstance(args, dict):
        raise ValueError('args must be a JSON object, e.g. {"id": 1}')
    return args


def _ids(raw: str) -> list[str]:
    """Ids from repeated form fields (joined by newlines by the Guard) or a JSON list."""
    if raw.startswith("["):
        try:
            values = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise ValueError("ids must be a JSON list of job ids") from None
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ValueError("ids must be a JSON list of job ids")
    else:
        values = raw.split("\n")
    ids = list(dict.fromkeys(check_job_id(v.strip()) for v in values if v.strip()))
    if len(ids) > MAX_BULK:
        raise ValueError(f"select at most {MAX_BULK} jobs at once")
    return ids
