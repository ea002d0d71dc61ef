"""What a job that succeeded stores: its return value as JSON, within its type's ``max_result``
bytes, and the envelope its history entry keeps (a large job's args omitted)."""

from __future__ import annotations

import logging
from typing import Any

import orjson

from ..errors import NonRetryableError
from ..handlers import JobType
from ..job import Job
from ..logfmt import job_extra
from ..serialization import SerializationError, dumps_json

__all__ = ["HISTORY_ARGS_MAX", "encode_result", "history_json", "oversized", "too_large"]

# a job whose stored envelope is larger keeps no copy of its args in each history entry
HISTORY_ARGS_MAX = 16 * 1024
log = logging.getLogger("errands.worker")


def history_json(job: Job) -> bytes:
    """``b""`` (the history keeps the job as the records do), or for a job larger than
    ``HISTORY_ARGS_MAX`` its envelope as JSON with the args replaced by
    ``{"_omitted": true, "bytes": <size of the stored job>}``."""
    size = len(job._raw) if job._raw is not None else 0
    if size <= HISTORY_ARGS_MAX:
        return b""
    env = job.envelope()
    env["a"] = {"_omitted": True, "bytes": size}
    try:
        return orjson.dumps(env, default=repr, option=orjson.OPT_NON_STR_KEYS)
    except Exception:  # meta a custom serializer could hold but JSON cannot
        return b"null"


def encode_result(job: Job, jt: JobType, result: Any) -> bytes:
    """The return value as JSON. One JSON cannot hold (another type, NaN) fails the job
    for good with ``strict_result``; else it is stored as null, with a warning. One larger
    than the type's ``max_result`` fails the job for good (:func:`too_large`)."""
    if result is None:  # (most handlers return nothing: dumps_json's answer, without its look)
        return b"null"
    try:
        data = dumps_json(result, "the result")
    except SerializationError as exc:
        if jt.strict_result:
            raise NonRetryableError(str(exc)) from None
        log.warning(
            "%s %s: %s; stored as null (strict_result=True makes it an error)",
            job.name,
            job.id,
            exc,
            extra=job_extra(job),
        )
        return b"null"
    if len(data) > jt.max_result:
        raise too_large(jt, len(data))
    return data


def too_large(jt: JobType, size: int) -> NonRetryableError:
    """The error of a job whose result is ``size`` bytes of JSON, over its type's
    ``max_result``: it fails for good, its result not stored. Redis refuses a bulk string over
    its ``proto-max-bulk-len`` (512 MiB by default) by closing the connection: the ack call
    carrying it would fail again and again, holding the acks of every other job with it."""
    return NonRetryableError(
        f"the result is {size} bytes of JSON, over max_result={jt.max_result} bytes of "
        f"{jt.name!r} (Redis refuses a value over its proto-max-bulk-len, 512 MiB by default): "
        "not stored; keep large data elsewhere (object storage, a database) and return a "
        "reference"
    )


def oversized(jt: JobType, encoded: dict[str, bytes]) -> dict[str, BaseException]:
    """The results of ``encoded`` (job id -> JSON, of a batch) over ``jt.max_result``, taken
    out of it: job id -> its :func:`too_large` error (each such job fails for good alone)."""
    limit = jt.max_result
    big: dict[str, BaseException] = {
        i: too_large(jt, len(data)) for i, data in encoded.items() if len(data) > limit
    }
    for job_id in big:
        del encoded[job_id]
    return big
