"""The Flask web app: ``flask --app app run`` from this directory (and ``python -m worker``).

Flask views are plain functions: they enqueue through a ``SyncEnqueuer``, one per process,
shared by every request thread.
"""

from __future__ import annotations

from flask import Flask, abort, request
from jobs import NAMESPACE, REDIS_URL, send_welcome, word_count

from errands import JobFailedError, SyncEnqueuer

enqueuer = SyncEnqueuer.from_url(REDIS_URL, namespace=NAMESPACE)
app = Flask(__name__)


@app.post("/signup")
def signup() -> dict[str, str]:
    address = request.args.get("address")
    if not address:
        abort(400, "address is required")
    job = enqueuer.enqueue(*send_welcome.item(address))
    if job is None:
        abort(503, "the job was not enqueued")
    return {"job_id": job.id}


@app.get("/word-count")
def count_words() -> dict[str, int]:
    job = enqueuer.enqueue(*word_count.item(request.args.get("text", "")))
    if job is None:
        abort(503, "the job was not enqueued")
    try:
        words: int = enqueuer.result(job.id, timeout=10)
    except TimeoutError:
        abort(504, "no worker answered in time")
    except JobFailedError as exc:
        abort(500, f"the job failed: {exc}")
    return {"words": words}
