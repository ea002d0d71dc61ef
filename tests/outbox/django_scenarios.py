"""Run in a process of its own (Django settings are process-wide): the enqueue_on_commit
scenarios on SQLite; prints the job ids that must be stored and those that must not, as JSON."""

from __future__ import annotations

import json
import sys

import django
from django.conf import settings


def main(redis_url: str, namespace: str, db_path: str) -> None:
    settings.configure(
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": db_path}},
        INSTALLED_APPS=[],
        USE_TZ=True,
    )
    django.setup()
    from django.db import connection, transaction

    from errands import SyncEnqueuer
    from errands.contrib.django import enqueue_on_commit

    kept: list[str] = []
    dropped: list[str] = []
    with connection.cursor() as cursor:
        cursor.execute("create table users (id integer primary key, email text)")
    with SyncEnqueuer.from_url(redis_url, namespace=namespace, strict=None) as enqueuer:

        def enqueue(n: int) -> str:
            return enqueue_on_commit("welcome", {"n": n}, enqueuer=enqueuer)

        with transaction.atomic():
            kept.append(enqueue(1))
            with transaction.atomic():
                kept.append(enqueue(2))  # a released savepoint keeps it
            try:
                with transaction.atomic():
                    dropped.append(enqueue(3))
                    with transaction.atomic():
                        dropped.append(enqueue(4))
                    raise RuntimeError("roll the savepoint back")
            except RuntimeError:
                pass
        try:
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute("insert into users (email) values ('a@example.com')")
                dropped.append(enqueue(5))
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
        kept.append(enqueue(6))  # autocommit: sent at once
        kept.append(enqueue_on_commit("welcome", {}, enqueuer=enqueuer, job_id="user-7"))
    print(json.dumps({"kept": kept, "dropped": dropped}))


if __name__ == "__main__":
    main(*sys.argv[1:4])
