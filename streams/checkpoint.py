"""Acknowledge input records only once their effects are durable.

Faust commits the offsets of acknowledged records. Agents here iterate with acks
off, hold each processed record, and acknowledge the held records after the
projection rows they produced are in ClickHouse (and Faust flushes its producer
before committing, which covers dead letters). A crash therefore replays records
whose rows may already be written: the projections dedupe on row identity.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Awaitable, Callable
from typing import Any, Protocol, cast

import faust
from mode import Service

from projections.sink import BatchingSink


class Ackable(Protocol):
    def ack(self) -> bool: ...


def unacked_events(stream: faust.StreamT[bytes]) -> AsyncIterable[faust.EventT[bytes]]:
    """The stream's events with automatic acks off (Faust's StreamT type lacks
    ``noack``, which every concrete Stream has)."""
    manual: faust.StreamT[bytes] = cast(faust.Stream[bytes], stream).noack()
    return cast(AsyncIterable[faust.EventT[bytes]], manual.events())


class Checkpoint:
    def __init__(self, sink: BatchingSink, max_rows: int) -> None:
        self._sink = sink
        self._max_rows = max_rows
        self._held: list[Ackable] = []
        self._lock = asyncio.Lock()
        # Run in order before the rows are written and the records acknowledged: output
        # records first, then the state that already counts them (see streams/state).
        self.before_ack: list[Callable[[], Awaitable[object]]] = []
        self.acked = 0

    def hold(self, event: Ackable) -> None:
        self._held.append(event)

    @property
    def due(self) -> bool:
        return self._sink.pending >= self._max_rows

    async def commit(self) -> None:
        """Write what is pending, then acknowledge every record held before the call."""
        async with self._lock:
            held, self._held = self._held, []
            for flush in self.before_ack:
                await flush()
            await self._sink.flush()
            for event in held:
                event.ack()
            self.acked += len(held)


class CheckpointService(Service):
    """Commits the checkpoint on a timer, so records are acknowledged (and rows and
    state written) under light load too, not only when the sink fills up."""

    def __init__(self, checkpoint: Checkpoint, interval: float, **kwargs: Any) -> None:
        self.checkpoint = checkpoint
        self.interval = interval
        super().__init__(**kwargs)

    @Service.task
    async def _commit_periodically(self) -> None:
        while not self.should_stop:
            await self.sleep(self.interval)
            await self.checkpoint.commit()
