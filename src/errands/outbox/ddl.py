"""SQL the outbox's table needs beyond its columns, shared by every stack's migration."""

from __future__ import annotations

from .rows import CHANNEL, TABLE

__all__ = ["POSTGRES_NOTIFY"]

# PostgreSQL: one NOTIFY per inserting statement, delivered at commit, wakes the relays
POSTGRES_NOTIFY = [
    f"CREATE OR REPLACE FUNCTION {TABLE}_notify() RETURNS trigger LANGUAGE plpgsql AS "
    f"$$ BEGIN PERFORM pg_notify('{CHANNEL}', ''); RETURN NULL; END $$",
    f"DROP TRIGGER IF EXISTS {TABLE}_notify ON {TABLE}",
    f"CREATE TRIGGER {TABLE}_notify AFTER INSERT ON {TABLE} "
    f"FOR EACH STATEMENT EXECUTE FUNCTION {TABLE}_notify()",
]
