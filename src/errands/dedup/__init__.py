"""Deduplication of enqueues (``Dedup``): the spec and its meaning here, the Lua in
``store/lua/lib/dedup.lua`` and ``store/lua/enqueue_dedup.lua``; see docs/dedup.md."""

from .spec import Dedup

__all__ = ["Dedup"]
