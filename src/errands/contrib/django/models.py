"""The outbox table as a Django model (the same table as ``errands.contrib.sqlalchemy_outbox``,
so either stack's relay reads what the other writes)."""

from __future__ import annotations

from django.db import models


class OutboxRow(models.Model):  # type: ignore[misc]
    """A job waiting for the relay; written by ``enqueue_in_outbox``."""

    id = models.BigAutoField(primary_key=True)
    job_id = models.CharField(max_length=200)
    name = models.CharField(max_length=200)
    payload = models.TextField()
    created_at = models.FloatField(db_index=True)

    class Meta:
        app_label = "errands"
        db_table = "errands_outbox"
