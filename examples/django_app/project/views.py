"""Django views are plain functions: they enqueue through a ``SyncEnqueuer``, one per process
(made when this module is imported), shared by every request thread."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET, require_POST
from jobs import NAMESPACE, REDIS_URL, send_welcome, word_count

from errands import JobFailedError, SyncEnqueuer

enqueuer = SyncEnqueuer.from_url(REDIS_URL, namespace=NAMESPACE)


@require_POST
def signup(request: HttpRequest) -> HttpResponse:
    address = request.GET.get("address")
    if not address:
        return HttpResponse("address is required", status=400)
    job = enqueuer.enqueue(*send_welcome.item(address))
    if job is None:
        return HttpResponse("the job was not enqueued", status=503)
    return JsonResponse({"job_id": job.id})


@require_GET
def count_words(request: HttpRequest) -> HttpResponse:
    job = enqueuer.enqueue(*word_count.item(request.GET.get("text", "")))
    if job is None:
        return HttpResponse("the job was not enqueued", status=503)
    try:
        words = enqueuer.result(job.id, timeout=10)
    except TimeoutError:
        return HttpResponse("no worker answered in time", status=504)
    except JobFailedError as exc:
        return HttpResponse(f"the job failed: {exc}", status=500)
    return JsonResponse({"words": words})
