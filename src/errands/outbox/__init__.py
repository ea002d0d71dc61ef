"""The transactional outbox, stack-independent: rows (what an outbox row holds) and the relay.
The per-stack parts (table, migration, writing rows, the database side of the relay) are in
``errands.contrib.sqlalchemy_outbox``, ``errands.contrib.sqlalchemy_relay`` and
``errands.contrib.django``. See docs/outbox.md."""

from ..store.outbox import OutboxStatus, RelayStatus
from .relay import OutboxRelay, Source
from .rows import OutboxRow, enqueue_item, new_row

__all__ = [
    "OutboxRelay",
    "OutboxRow",
    "OutboxStatus",
    "RelayStatus",
    "Source",
    "enqueue_item",
    "new_row",
]
