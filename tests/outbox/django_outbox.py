"""Run in a process of its own (Django settings are process-wide): migrate the errands app,
write outbox rows in committed and rolled-back transactions; prints their job ids as JSON.
``python -m tests.outbox.django_outbox sqlite PATH`` or ``... postgresql HOST NAME``."""

from __future__ import annotations

import json
import sys

import django
from django.conf import settings


def database(kind: str, where: str, name: str) -> dict[str, str]:
    if kind == "sqlite":
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": where}
    return {"ENGINE": "django.db.backends.postgresql", "HOST": where, "NAME": name,
            "USER": "postgres"}  # fmt: skip


def main(kind: str, where: str, name: str = "") -> None:
    settings.configure(
        DATABASES={"default": database(kind, where, name)},
        INSTALLED_APPS=["errands.contrib.django"],
        USE_TZ=True,
    )
    django.setup()
    from django.core.management import call_command
    from django.db import transaction

    from errands.contrib.django import enqueue_in_outbox

    call_command("migrate", verbosity=0)
    call_command("makemigrations", "errands", check=True, dry_run=True, verbosity=0)  # in sync
    committed: list[str] = []
    rolled_back: list[str] = []
    with transaction.atomic():
        committed += [enqueue_in_outbox("welcome", {"n": n}) for n in range(20)]
        try:
            with transaction.atomic():
                rolled_back.append(enqueue_in_outbox("welcome", {"n": -1}))
                raise RuntimeError("roll the savepoint back")
        except RuntimeError:
            pass
    try:
        with transaction.atomic():
            rolled_back += [enqueue_in_outbox("welcome", {"n": n}) for n in range(5)]
            raise RuntimeError("roll back")
    except RuntimeError:
        pass
    committed.append(enqueue_in_outbox("welcome", {}, job_id="signup-9", priority=3))
    print(json.dumps({"committed": committed, "rolled_back": rolled_back}))


if __name__ == "__main__":
    main(*sys.argv[1:4])
