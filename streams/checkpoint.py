"""Acknowledge input records only once their effects are durable.

Faust commits the offsets of acknowledged records. Agents here iterate with acks
off, hold each processed record, and acknowledge the held records after the
output records they caused are acknowledged by the broker, the state that counts
them is in its changelog (``before_ack``: the cut of each stateful runtime) and the
projection rows they produced are in ClickHouse (and Faust flushes its producer
before committing, which covers dead letters). A crash therefore replays records
whose effects may already be written: outputs keep their identity on replay, and
their readers dedupe on it. See docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from streams.background import Background
from streams.state.lease import Fenced

log = logging.getLogger(__name__)


class Ackable(Protocol):
    def ack(self) -> bool: ...


class Sink(Protocol):
    """Where projected rows wait to be written (``projections.sink.BatchingSink``)."""

    @property
    def pending(self) -> int: ...

    async def flush(self) -> None: ...


OVERDUE = 4
"""How many times ``max_rows`` may wait before an input agent itself waits for them."""


class Checkpoint:
    def __init__(self, sink: Sink, max_rows: int) -> None:
        self._sink = sink
        self._max_rows = max_rows
        self._held: list[Ackable] = []
        self._lock = asyncio.Lock()
        # Set when enough rows wait: the checkpoint service commits at once.
        self.wanted = asyncio.Event()
        # Run in order before the rows are written and the records acknowledged: output
        # records first, then the state that already counts them (see streams/state).
        self.before_ack: list[Callable[[], Awaitable[object]]] = []
        self.acked = 0

    def hold(self, event: Ackable) -> None:
        self._held.append(event)

    @property
    def due(self) -> bool:
        return self._sink.pending >= self._max_rows

    async def keep_up(self) -> None:
        """After an input agent holds a record: once ``max_rows`` rows wait, ask the
        checkpoint service to commit; only far beyond that, commit here and wait (the
        agent's back-pressure). Committing here at ``max_rows`` already held the agent
        for the whole ClickHouse insert, which runs in a thread while the loop could
        have gone on with the next records."""
        if self._sink.pending >= OVERDUE * self._max_rows:
            await self.commit()
        elif self.due:
            self.wanted.set()

    async def commit(self) -> None:
        """Write what is pending, then acknowledge every record held before the call."""
        self.wanted.clear()
        async with self._lock:
            held, self._held = self._held, []
            try:
                for flush in self.before_ack:
                    await flush()
            except Fenced as error:
                # Another worker may own the partitions now: it replays these records.
                log.warning("checkpoint skipped, %d records not acknowledged: %s", len(held), error)
                return
            await self._sink.flush()
            for event in held:
                event.ack()
            self.acked += len(held)


class CheckpointService(Background):
    """Commits the checkpoint on a timer, so records are acknowledged (and rows and
    state written) under light load too, and at once when an agent asks
    (``Checkpoint.keep_up``)."""

    def __init__(self, checkpoint: Checkpoint, interval: float) -> None:
        self.checkpoint = checkpoint
        self.interval = interval

    async def run(self) -> None:
        """Commit when asked or when the interval passes (until cancelled)."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.checkpoint.wanted.wait(), self.interval)
            await self.checkpoint.commit()
