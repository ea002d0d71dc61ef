"""An app whose pool encodes envelopes its own way (``b"M"`` then JSON), for
``python -m errands relay --app tests.outbox.marked_app:pool``: Redis and namespace from
``REDIS_URL`` and ``ERRANDS_NAMESPACE``."""

from __future__ import annotations

import os
from typing import Any

from errands import WorkerPool
from errands.serialization import JSONSerializer, SerializationError


class Marked(JSONSerializer):
    def dumps(self, value: dict[str, Any]) -> bytes:
        return b"M" + super().dumps(value)

    def loads(self, data: bytes) -> dict[str, Any]:
        if not data.startswith(b"M"):
            raise SerializationError("not a marked envelope")
        return super().loads(data[1:])


pool = WorkerPool.from_url(  # (connects lazily: importing it needs no server)
    os.environ.get("REDIS_URL", "redis://localhost:6379/0"),
    namespace=os.environ.get("ERRANDS_NAMESPACE", "errands"),
    serializer=Marked(),
)
