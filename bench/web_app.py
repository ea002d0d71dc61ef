"""The app of bench/web.py: the shape of examples/fastapi_app (an Enqueuer opened by the
lifespan, handed to endpoints with ``Depends``) with two endpoints that differ only in the
enqueue: ``/plain`` answers what ``/enqueue`` answers, without storing a job.

Run by bench/web.py as ``uvicorn web_app:app`` with ``REDIS_URL`` set; not a test fixture.
The app also times the garbage collector's pauses (``gc.callbacks``) and hands them to
bench/web.py on ``GET /gc`` (which resets them). ``WEB_APP_GC`` picks the configuration:
``freeze`` (the default) ends the lifespan's startup with ``gc.collect(); gc.freeze()`` as
examples/fastapi_app does (docs/integrations.md), ``default`` leaves the collector as CPython
sets it, ``threshold`` freezes and also calls ``gc.set_threshold(10_000, 10, 10)``.
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request

from errands import Enqueuer

REDIS_URL = os.environ["REDIS_URL"]
GC_MODE = os.environ.get("WEB_APP_GC", "freeze")
GC_PAUSES: list[tuple[int, float]] = []  # (generation, seconds) of each collection
_gc_start = [0.0]


def _time_gc(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _gc_start[0] = time.perf_counter()
    else:
        GC_PAUSES.append((info["generation"], time.perf_counter() - _gc_start[0]))


gc.callbacks.append(_time_gc)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with Enqueuer.from_url(REDIS_URL, namespace="webbench", strict=None) as enqueuer:
        app.state.enqueuer = enqueuer
        if GC_MODE in ("freeze", "threshold"):
            gc.collect()
            gc.freeze()  # what startup built stays out of every later collection
        if GC_MODE == "threshold":
            gc.set_threshold(10_000, 10, 10)
        yield


app = FastAPI(lifespan=lifespan)


async def get_enqueuer(request: Request) -> Enqueuer:
    enqueuer: Enqueuer = request.app.state.enqueuer
    return enqueuer


EnqueuerDep = Annotated[Enqueuer, Depends(get_enqueuer)]


@app.post("/plain")
async def plain(address: str, enqueuer: EnqueuerDep) -> dict[str, str]:
    return {"job_id": uuid.uuid4().hex}


@app.post("/enqueue")
async def enqueue(address: str, enqueuer: EnqueuerDep) -> dict[str, str]:
    job = await enqueuer.enqueue("send_welcome", {"address": address})
    if job is None:
        raise HTTPException(503, "the job was not enqueued")
    return {"job_id": job.id}


@app.post("/yield")
async def yield_(address: str, enqueuer: EnqueuerDep) -> dict[str, str]:
    """Awaits once (one turn of the loop) instead of the enqueue: no errands code runs."""
    await asyncio.sleep(0)
    return {"job_id": uuid.uuid4().hex}


@app.get("/gc")
async def gc_pauses() -> dict[str, float]:
    """Collections since the last call (young ones, of generation 2), their time, the longest."""
    pauses, GC_PAUSES[:] = list(GC_PAUSES), []
    return {
        "collections": len(pauses),
        "young": sum(1 for gen, _ in pauses if gen < 2),
        "gen2": sum(1 for gen, _ in pauses if gen == 2),
        "gen2_ms": 1000 * sum(s for gen, s in pauses if gen == 2),
        "max_ms": 1000 * max((s for _, s in pauses), default=0.0),
        "total_ms": 1000 * sum(s for _, s in pauses),
    }
