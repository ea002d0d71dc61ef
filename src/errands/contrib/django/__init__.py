"""Enqueue with a Django transaction; see docs/outbox.md.

``enqueue_on_commit`` needs nothing more; ``enqueue_in_outbox`` needs this app in
``INSTALLED_APPS`` (``"errands.contrib.django"``, label ``errands``) and its migration.

>>> with transaction.atomic():
...     user = User.objects.create(email=email)
...     enqueue_on_commit("send_welcome", {"user_id": user.pk}, enqueuer=enqueuer)

The job is sent to Redis by Django's own ``transaction.on_commit`` hook: when the outermost
``atomic`` block commits, dropped when it rolls back, and dropped with a savepoint (an inner
``atomic``) that rolls back. Outside ``atomic`` (autocommit) it is sent at once. A crash (or Redis
being down) between the commit and the enqueue loses the job (logged, not raised, inside
``atomic``): the transactional outbox does not.
"""

from __future__ import annotations

import logging
from typing import Any

from ...errors import NotReplicatedError

__all__ = ["enqueue_in_outbox", "enqueue_on_commit"]

log = logging.getLogger("errands.contrib.django")


def enqueue_on_commit(
    name: str,
    args: dict[str, Any] | None = None,
    *,
    enqueuer: Any,
    using: str | None = None,
    **options: Any,
) -> str:
    """Enqueue through ``enqueuer`` (a :class:`~errands.SyncEnqueuer`) when the transaction of
    the database ``using`` (default: ``default``) commits; returns the job's id, known now.

    ``options`` are those of ``enqueue`` (``delay``, ``at``, ``priority``, ``retry``, ``meta``,
    ``job_id``, ``timeout``, ``partition``). The job is built and encoded now, so a bad one
    raises here, in the transaction. Inside ``atomic``, an error of the enqueue after the commit
    (Redis unreachable, a middleware raising) is logged by ``errands.contrib.django`` and not
    raised: Django would skip the transaction's later ``on_commit`` callbacks after one that
    raises. Outside ``atomic`` (autocommit) the job is enqueued at once and errors raise here.
    """
    from django.db import transaction

    from .._on_commit import checked_item

    item = checked_item(enqueuer, name, args, options)
    if transaction.get_connection(using).in_atomic_block:
        transaction.on_commit(lambda: _send_logged(enqueuer, item), using=using)
    else:  # autocommit: Django runs it at once (manual transactions: Django raises)
        transaction.on_commit(lambda: enqueuer.enqueue_many([item]), using=using)
    return str(item[2]["job_id"])


def _send_logged(enqueuer: Any, item: tuple[str, dict[str, Any], dict[str, Any]]) -> None:
    try:
        enqueuer.enqueue_many([item])
    except NotReplicatedError:
        log.exception(
            "the transaction committed and job %r (id %s), enqueued on commit, was stored but "
            "not confirmed by replicas",
            item[0],
            item[2]["job_id"],
        )
    except Exception:
        log.exception(
            "the transaction committed but job %r (id %s), enqueued on commit, was not stored",
            item[0],
            item[2]["job_id"],
        )


def enqueue_in_outbox(
    name: str, args: dict[str, Any] | None = None, *, using: str | None = None, **options: Any
) -> str:
    """Write the job as a row of ``errands_outbox`` in the current transaction of the database
    ``using`` (default: ``default``); returns its job id. The relay (``python -m errands relay``
    or ``SQLAlchemySource`` in your pools, on the same database) enqueues it once the
    transaction commits; a rollback takes the row with it.

    ``options`` are those of ``enqueue`` (``delay``, ``at``, ``priority``, ``retry``, ``meta``,
    ``job_id``, ``timeout``, ``partition``); a ``delay`` counts from now.
    """
    from ...outbox.rows import new_row
    from .models import OutboxRow

    row = new_row(name, args, **options)
    OutboxRow.objects.using(using or "default").create(
        job_id=row.job_id, name=row.name, payload=row.payload, created_at=row.created_at
    )
    return row.job_id
