"""Limits changed at run time (``Client.set_limits``, ``errands limits set``): each pool re-reads
them every second and applies them to its job types, or goes back to the limits of its code when
they are cleared, and publishes the type-wide cap it now applies (for inspection). The fetch
script then checks the new ones (see lua/lib/limits.lua)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import orjson

from ..aio import cancel_and_wait
from ..handlers import JobType
from ..limits import compile_limits, limit_from_dict, limit_to_dict
from ..limits.spec import has_rate
from ..store.keys import Keys
from .sampler import PrioritySampler

__all__ = ["LimitWatch", "write_caps"]

log = logging.getLogger("errands.worker")


class LimitWatch:
    """Keeps the job types' ``max_concurrency`` and ``limit_spec`` at the runtime limits."""

    def __init__(
        self,
        redis: Any,
        keys: Keys,
        job_types: Mapping[str, JobType],
        changed: Callable[[], None],
        interval: float = 1.0,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.job_types = job_types
        self.changed = changed
        self.interval = interval
        self._seen: dict[str, bytes | None] = {}  # (none at first: each name applied once)
        self._unpublished: list[str] = []  # caps whose write failed: written again next time

    async def publish(self) -> None:
        """Write the limits of this pool's code to ``code_limits`` (for inspection)."""
        coded = {
            name: orjson.dumps([limit_to_dict(limit) for limit in jt.limits])
            for name, jt in self.job_types.items()
            if jt.limits
        }
        try:
            if coded:
                await self.redis.hset(self.keys.code_limits, mapping=coded)
        except Exception as exc:  # inspection only
            log.debug("publishing the limits failed: %r", exc)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Publish the code's limits, apply the runtime ones, then keep them applied."""
        await self.publish()
        await self.refresh()
        task = asyncio.create_task(self.run(), name="errands-limits")
        try:
            yield
        finally:
            await cancel_and_wait([task])

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.refresh()

    async def refresh(self) -> None:
        """Read the runtime limits once; a failure leaves the limits as they were."""
        names = list(self.job_types)
        try:
            raw = await self.redis.hmget(self.keys.runtime_limits, names)
        except Exception as exc:  # Redis away: try again next time
            log.debug("reading the runtime limits failed: %r", exc)
            return
        dirty = []
        for name, value in zip(names, raw, strict=True):
            # (a name not seen yet is applied: a pool started again in this process after a
            # `limits clear` kept the runtime limits its job types had been given)
            if name not in self._seen or self._seen[name] != value:
                self._seen[name] = value
                if self._apply(self.job_types[name], value):
                    dirty.append(name)
        if dirty:
            self.changed()
        if dirty or self._unpublished:
            await self._publish_caps(list(dict.fromkeys(dirty + self._unpublished)))

    async def _publish_caps(self, names: list[str]) -> None:
        """The type-wide caps now in force to ``limits`` (written at pool start: worker/pool.py),
        which ``Client.queues()`` and ``Client.job().waiting_for`` read."""
        try:
            await write_caps(self.redis, self.keys, self.job_types, names)
        except Exception as exc:  # inspection only: written again at the next refresh
            log.debug("publishing the caps failed: %r", exc)
            self._unpublished = names
        else:
            self._unpublished = []

    def _apply(self, jt: JobType, value: bytes | None) -> bool:
        try:
            limits = (
                jt.limits if value is None else tuple(map(limit_from_dict, orjson.loads(value)))
            )
            effective = compile_limits(limits, jt.code_max_concurrency)
        except (TypeError, ValueError, AttributeError, orjson.JSONDecodeError) as exc:
            log.warning("runtime limits of %s are invalid (%s): kept as they were", jt.name, exc)
            return False
        if effective == (jt.max_concurrency, jt.limit_spec):
            return False
        jt.max_concurrency, jt.limit_spec = effective
        log.info("limits of %s now %s", jt.name, "as in code" if value is None else value.decode())
        return True


async def write_caps(
    redis: Any, keys: Keys, job_types: Mapping[str, JobType], names: Iterable[str]
) -> None:
    """The type-wide caps of ``names`` as in force now to ``limits`` (at pool start and when
    runtime limits change them): ``Client.queues()`` and ``Client.job().waiting_for`` read them."""
    caps = {name: job_types[name].max_concurrency for name in names}
    await redis.hset(keys.limits, mapping=caps)


def apply_limits(
    types: Mapping[str, JobType], plain: Mapping[str, JobType]
) -> tuple[PrioritySampler, dict[str, str], frozenset[str]]:
    """What a worker derives from its job types' limits: the sampler of its plain job types
    (batch ones are fetched by their own loops, batching.py), the limit specs for the fetch
    script (limits/spec.py), and the names with a rate (their jobs fetched ahead wait less for
    a slot: lookahead.py)."""
    sampler = PrioritySampler([(n, jt.priority, jt.max_concurrency) for n, jt in plain.items()])
    specs = {n: jt.limit_spec for n, jt in types.items() if jt.limit_spec}
    rated = frozenset(n for n, spec in specs.items() if has_rate(spec))
    return sampler, specs, rated
