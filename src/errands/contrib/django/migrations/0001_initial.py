"""Create errands_outbox (and, on PostgreSQL, the trigger whose NOTIFY wakes the relays)."""

from __future__ import annotations

from typing import Any

from django.db import migrations, models

from ....outbox.ddl import POSTGRES_NOTIFY


def add_notify(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        for statement in POSTGRES_NOTIFY:
            schema_editor.execute(statement)


def drop_notify(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP FUNCTION IF EXISTS errands_outbox_notify() CASCADE")


class Migration(migrations.Migration):  # type: ignore[misc]
    initial = True
    dependencies: list[tuple[str, str]] = []
    operations = [
        migrations.CreateModel(
            name="OutboxRow",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("job_id", models.CharField(max_length=200)),
                ("name", models.CharField(max_length=200)),
                ("payload", models.TextField()),
                ("created_at", models.FloatField(db_index=True)),
            ],
            options={"db_table": "errands_outbox"},
        ),
        migrations.RunPython(add_notify, drop_notify),
    ]
