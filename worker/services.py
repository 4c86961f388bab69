"""The parts of a worker that are plain objects (the HTTP API, the ClickHouse side, the
definitions follower, the checkpoint timer), run as Faust's ``mode`` services: started
and stopped with the app, and a loop that fails crashes its service as a task would."""

from __future__ import annotations

from typing import Any, Protocol

from mode import Service


class Part(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class Loop(Protocol):
    async def run(self) -> None: ...


class Running(Service):
    """A part with ``start`` and ``stop``."""

    def __init__(self, part: Part, **kwargs: Any) -> None:
        self.part = part
        super().__init__(**kwargs)

    async def on_start(self) -> None:
        await self.part.start()

    async def on_stop(self) -> None:
        await self.part.stop()


class Looping(Service):
    """A part whose ``run`` loops until cancelled: a task of the service."""

    def __init__(self, part: Loop, **kwargs: Any) -> None:
        self.part = part
        super().__init__(**kwargs)

    @Service.task
    async def _run(self) -> None:
        await self.part.run()
