"""This process's ClickHouse side: the batching sink the projections write through and,
once open, the client (opened with the tables applied, closed at stop)."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from clickhouse_connect.driver.client import Client

from projections.clickhouse import connect
from projections.sink import BatchingSink
from streams.settings import Settings


@dataclass
class Projections:
    settings: Settings
    sink: BatchingSink = field(default_factory=BatchingSink)
    client: Client | None = None
    """Open while the worker runs, when its role projects."""

    async def start(self) -> None:
        settings = self.settings
        client = await asyncio.to_thread(connect, settings.clickhouse, settings.clickhouse_database)
        self.client = client
        self.sink.attach(client)

    async def stop(self) -> None:
        # Rows are durable before the consumer commits; this last flush only saves
        # the next start from rewriting them.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.sink.flush(), timeout=10)
