"""The app of bench/web.py: the shape of examples/fastapi_app (an Enqueuer opened by the
lifespan, handed to endpoints with ``Depends``) with two endpoints that differ only in the
enqueue: ``/plain`` answers what ``/enqueue`` answers, without storing a job.

Run by bench/web.py as ``uvicorn web_app:app`` with ``REDIS_URL`` set; not a test fixture.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request

from errands import Enqueuer

REDIS_URL = os.environ["REDIS_URL"]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with Enqueuer.from_url(REDIS_URL, namespace="webbench", strict=None) as enqueuer:
        app.state.enqueuer = enqueuer
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
