"""Whether this worker may still write for the partitions it was assigned.

Without broker transactions nothing stops a worker that lost its group membership
from writing. A worker that was stopped (SIGSTOP, a long pause) past the group's
session timeout sent no heartbeat meanwhile, so the group has given its partitions to
another member: once its event loop runs again, the first check sees the gap and the
lease stays lost until the next assignment renews it. Outputs and state flushes check
the lease first; what is in flight at the instant of the pause is caught by the
changelog's epochs (see ``CoalescingTable``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class Fenced(RuntimeError):
    """This worker may no longer own its partitions: nothing is written for them."""


class Lease:
    def __init__(self, timeout: float | None, clock: Callable[[], float] = time.monotonic):
        """``timeout``: the group's session timeout in seconds (None: never lost). The
        lease is armed by the first ``renew`` (an assignment); until then it holds."""
        self._timeout = timeout
        self._clock = clock
        self._seen = clock()
        self._armed = False
        self._lost = False
        self._watcher: asyncio.Task[None] | None = None

    @classmethod
    def unlimited(cls) -> Lease:
        return cls(None)

    def renew(self) -> None:
        """A new assignment: the partitions held now are this worker's. From the first
        one on, a task looks at the clock a few times per session timeout, so that only
        a loop that really stood still looks like a pause."""
        self._lost = False
        self._seen = self._clock()
        self._armed = True
        if self._timeout is not None and self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(self._watch(self._timeout / 4))

    def valid(self) -> bool:
        if self._timeout is None or not self._armed:
            return True
        now = self._clock()
        if now - self._seen > self._timeout:
            self._lost = True
        self._seen = now
        return not self._lost

    def check(self) -> None:
        if not self.valid():
            raise Fenced("the worker was paused past its session timeout; not writing")

    async def _watch(self, interval: float) -> None:
        while True:
            self.valid()
            await asyncio.sleep(interval)

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None
