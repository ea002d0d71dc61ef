"""Run in a process of its own (Django settings are process-wide): enqueue_on_commit with bad
jobs among good ones on SQLite; prints, as JSON, the job ids that must be stored, those that
must not, what raised where, and the users committed."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import django
from django.conf import settings


class Boom:
    """Raises for jobs with ``boom`` in their args: a job that fails only at the enqueue."""

    async def enqueue(self, job: Any, next: Any) -> Any:
        if job.args.get("boom"):
            raise RuntimeError("boom")
        return await next()


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

    logs: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: logs.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("errands.contrib.django").addHandler(handler)
    out: dict[str, Any] = {"kept": [], "lost": [], "raised": []}
    with connection.cursor() as cursor:
        cursor.execute("create table users (id integer primary key, email text)")
    with SyncEnqueuer.from_url(
        redis_url, namespace=namespace, strict=None, middleware=[Boom()]
    ) as enqueuer:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("insert into users (email) values ('a@example.com')")
            out["kept"].append(enqueue_on_commit("welcome", {"n": 1}, enqueuer=enqueuer))
            for bad in ({"priority": 5000}, {"colour": "red"}, {"timeout": 0}):
                try:
                    enqueue_on_commit("welcome", {"n": 2}, enqueuer=enqueuer, **bad)
                except (TypeError, ValueError) as exc:  # at the call, in the transaction
                    out["raised"].append(type(exc).__name__)
            out["lost"].append(enqueue_on_commit("welcome", {"boom": True}, enqueuer=enqueuer))
            out["kept"].append(enqueue_on_commit("welcome", {"n": 3}, enqueuer=enqueuer))
        # the atomic block's exit did not raise: the failing job is logged
        out["logged"] = logs
        try:  # autocommit: enqueued at once, the error raised here
            enqueue_on_commit("welcome", {"boom": True}, enqueuer=enqueuer)
        except RuntimeError as exc:
            out["raised"].append(f"autocommit {exc}")
    with connection.cursor() as cursor:
        cursor.execute("select count(*) from users")
        out["users"] = cursor.fetchone()[0]
    print(json.dumps(out))


if __name__ == "__main__":
    main(*sys.argv[1:4])
