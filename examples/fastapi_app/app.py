"""FastAPI app enqueueing errands jobs: ``uvicorn app:app`` from this directory.

The Enqueuer is opened and closed by the app's lifespan and handed to endpoints with
``Depends``; ``/word-count`` waits for the job's result. The lifespan ends its startup with
``gc.freeze()`` (docs/integrations.md: the garbage collector and tail latency).
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request
from jobs import NAMESPACE, REDIS_URL, send_welcome, word_count

from errands import Enqueuer, JobFailedError


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with Enqueuer.from_url(REDIS_URL, namespace=NAMESPACE) as enqueuer:
        app.state.enqueuer = enqueuer
        # What imports and startup built (~76,500 objects) stays out of every later
        # collection: under load a full collection walking them paused the app 38-55 ms.
        gc.collect()
        gc.freeze()
        yield


app = FastAPI(lifespan=lifespan)


async def get_enqueuer(request: Request) -> Enqueuer:
    # async: FastAPI runs a plain-def dependency in a thread pool, a hop per request
    enqueuer: Enqueuer = request.app.state.enqueuer
    return enqueuer


EnqueuerDep = Annotated[Enqueuer, Depends(get_enqueuer)]


@app.post("/signup")
async def signup(address: str, enqueuer: EnqueuerDep) -> dict[str, str]:
    job = await send_welcome.using(enqueuer).enqueue(address)
    if job is None:
        raise HTTPException(503, "the job was not enqueued")
    return {"job_id": job.id}


@app.get("/word-count")
async def count_words(text: str, enqueuer: EnqueuerDep) -> dict[str, int]:
    job = await word_count.using(enqueuer).enqueue(text)
    if job is None:
        raise HTTPException(503, "the job was not enqueued")
    try:
        words: int = await job.result(timeout=10)
    except TimeoutError:
        raise HTTPException(504, "no worker answered in time") from None
    except JobFailedError as exc:
        raise HTTPException(500, f"the job failed: {exc}") from None
    return {"words": words}
