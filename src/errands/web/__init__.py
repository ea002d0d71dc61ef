"""The web dashboard: ``errands.dashboard(redis, namespace=...)`` is a Starlette app.

Needs the ``dashboard`` extra: ``pip install 'errands[dashboard]'``. Talks to Redis through the
admin ``Client``, but for its sessions' revocation set (sessions.py, on the Client's connection):
imports ``admin``, ``store`` and the top-level modules; never ``worker`` or ``cli``.
"""

from .app import dashboard
from .security import DEFAULT_REDACT

__all__ = ["DEFAULT_REDACT", "dashboard"]
