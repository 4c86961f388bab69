"""A loop that runs beside the agents (the checkpoint timer, the definitions follower):
``run`` loops until cancelled. A worker runs it as a task of a mode service
(``worker/services.py``); ``start`` and ``stop`` run it alone, as tests do."""

from __future__ import annotations

import asyncio
import contextlib


class Background:
    _task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        self._task = asyncio.create_task(self.run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
