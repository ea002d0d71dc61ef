"""What a running job's handler asks of its pool (``job._backend`` is the Worker): a check-in
(``await job.checkin(...)``) and its workflow run (``job.workflow``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from ..workflows.members import PlainFactory
from ..workflows.run import WorkflowRun

if TYPE_CHECKING:
    from ..clock import Clock
    from ..job import Job
    from ..serialization import Serializer
    from ..store.keys import Keys
    from ..store.scripts import Scripts

__all__ = ["JobCalls"]


class JobCalls:
    """Mixin of Worker."""

    pool_id: str
    scripts: Scripts
    keys: Keys
    serializer: Serializer
    clock: Clock
    abandoned: bool

    async def checkin(self, job: Job, message: str) -> bool:
        """Record progress of a running job (``await job.checkin("10 of 100")``); False (and
        nothing recorded) when this attempt no longer runs the job."""
        if self.abandoned:
            return False
        data = orjson.dumps({"message": message, "at": self.clock.now()})
        attempt = f"{self.pool_id}:{job._attempt}"
        return await self.scripts.checkin(job.id, job.name, data, attempt)

    def workflow_run(self, run_id: str) -> WorkflowRun:
        """``job.workflow`` of a running member: its run, able to grow."""
        factory = PlainFactory(self.serializer, self.clock)
        return WorkflowRun(self.scripts.redis, self.keys, run_id, factory)
