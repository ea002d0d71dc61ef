"""aiohttp app enqueueing errands jobs: ``python app.py`` from this directory.

The Enqueuer lives in a ``cleanup_ctx`` (opened at startup, closed at cleanup) and is stored on
the app under a typed ``AppKey``; ``/word-count`` waits for the job's result.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web
from jobs import NAMESPACE, REDIS_URL, send_welcome, word_count

from errands import Enqueuer, JobFailedError

ENQUEUER = web.AppKey("enqueuer", Enqueuer)
routes = web.RouteTableDef()


async def errands_ctx(app: web.Application) -> AsyncIterator[None]:
    async with Enqueuer.from_url(REDIS_URL, namespace=NAMESPACE) as enqueuer:
        app[ENQUEUER] = enqueuer
        yield


@routes.post("/signup")
async def signup(request: web.Request) -> web.Response:
    address = request.query.get("address")
    if not address:
        raise web.HTTPBadRequest(text="address is required")
    job = await send_welcome.using(request.app[ENQUEUER]).enqueue(address)
    if job is None:
        raise web.HTTPServiceUnavailable(text="the job was not enqueued")
    return web.json_response({"job_id": job.id})


@routes.get("/word-count")
async def count_words(request: web.Request) -> web.Response:
    job = await word_count.using(request.app[ENQUEUER]).enqueue(request.query.get("text", ""))
    if job is None:
        raise web.HTTPServiceUnavailable(text="the job was not enqueued")
    try:
        words = await job.result(timeout=10)
    except TimeoutError:
        raise web.HTTPGatewayTimeout(text="no worker answered in time") from None
    except JobFailedError as exc:
        raise web.HTTPInternalServerError(text=f"the job failed: {exc}") from None
    return web.json_response({"words": words})


def create_app() -> web.Application:
    app = web.Application()
    app.cleanup_ctx.append(errands_ctx)
    app.add_routes(routes)
    return app


if __name__ == "__main__":
    web.run_app(create_app())
