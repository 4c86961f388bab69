"""The service that owns this process's ClickHouse client for its lifetime."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from mode import Service

from projections.clickhouse import connect
from streams.engine import Engine


class ProjectionService(Service):
    """Opens ClickHouse (applying the tables) for the sink, and closes it."""

    def __init__(self, engine: Engine, **kwargs: Any) -> None:
        self.engine = engine
        super().__init__(**kwargs)

    async def on_start(self) -> None:
        settings = self.engine.settings
        client = await asyncio.to_thread(connect, settings.clickhouse, settings.clickhouse_database)
        self.engine.clickhouse = client
        self.engine.sink.attach(client)

    async def on_stop(self) -> None:
        # Rows are durable before the consumer commits; this last flush only saves
        # the next start from rewriting them.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.engine.sink.flush(), timeout=10)
