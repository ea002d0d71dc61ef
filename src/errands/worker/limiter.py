"""In-handler limiters: ``pool.limiter(name, Rate(...))``, for calls to outside APIs shared by
several job types. ``async with limiter.acquire():`` takes one start of the limiter's rates (a
sliding window on the Redis clock, across every pool: ``lua/limiter.lua``); over the limit, the
running job is snoozed until the limiter frees (no failure counted), at most ``max_snoozes``
times in its life, after which acquiring fails the job as any error would."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from ..checks import whole
from ..errors import LimiterExhaustedError, LimiterSnooze, RegistrationError
from ..handlers import current_job
from ..limits import Rate, compile_limits
from ..store.keys import check_job_name
from ..store.scripts import Scripts

__all__ = ["Limiter"]


class Limiter:
    """A named limit shared by every pool of the namespace (see :meth:`WorkerPool.limiter`)."""

    def __init__(
        self, name: str, rates: tuple[Rate, ...], scripts: Callable[[], Scripts], max_snoozes: int
    ) -> None:
        try:
            check_job_name(name)
        except ValueError as exc:
            raise RegistrationError(f"limiter: {exc}") from None
        if not rates or not all(isinstance(r, Rate) and not r.per_partition for r in rates):
            raise RegistrationError(f"limiter {name!r} takes Rate(...) limits, not per partition")
        try:
            compile_limits(rates)  # (too many windows)
        except ValueError as exc:
            raise RegistrationError(f"limiter {name!r}: {exc}") from None
        max_snoozes = whole(  # (a nan cap was never reached)
            f"limiter {name!r}: max_snoozes", max_snoozes, least=0, error=RegistrationError
        )
        self.name = name
        self.rates = rates
        self.max_snoozes = max_snoozes
        self._scripts = scripts
        self._args = [(r.limit, r.per_ms) for r in rates]

    async def try_acquire(self) -> float:
        """Take one start if the rates allow it now: 0.0, else the seconds until they do."""
        return await self._scripts().limiter(self.name, self._args)

    def acquire(self) -> AbstractAsyncContextManager[None]:
        """``async with limiter.acquire():`` — inside a handler, over the limit, the job is
        snoozed until the limiter frees (:class:`~errands.errors.LimiterSnooze`, let it
        propagate), or fails with :class:`~errands.errors.LimiterExhaustedError` once snoozed
        ``max_snoozes`` times. Outside a handler, it waits until the limiter frees."""
        return self._acquire()

    @asynccontextmanager
    async def _acquire(self) -> AsyncIterator[None]:
        while (wait := await self.try_acquire()) > 0:
            try:
                job = current_job()
            except RuntimeError:
                await asyncio.sleep(wait)
                continue
            if job.snoozes >= self.max_snoozes:
                raise LimiterExhaustedError(
                    f"limiter {self.name!r} over its limit after {job.snoozes} snoozes"
                )
            raise LimiterSnooze(wait, reason=f"limiter {self.name!r} over its limit")
        yield

    def __repr__(self) -> str:
        return f"<Limiter {self.name} {list(self.rates)}>"
