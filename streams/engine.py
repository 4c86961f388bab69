"""What the agents and services of one worker process share."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from clickhouse_connect.driver.client import Client
from pydantic import BaseModel

from projections.sink import BatchingSink
from streams.checkpoint import Checkpoint
from streams.clock import Clock, InputProgress
from streams.definitions import DefinitionsService
from streams.settings import Settings
from streams.state import CoalescingTable, create_table
from streams.state.lease import Lease
from streams.state.timers import Timers, create_timers
from streams.topics import Topics

InputHandler = Callable[[int, int, str, Sequence[BaseModel]], Awaitable[None]]
"""Called with (partition, offset, input table name, valid items) for each input record."""
Previewer = Callable[[Any, int], Awaitable[tuple[int, int, list[str]]]]
"""(condition, sample size) -> (members, users, sample): who matches, over local state."""


@dataclass
class Engine:
    settings: Settings
    bootstrap: str
    topics: Topics
    sink: BatchingSink
    checkpoint: Checkpoint
    clock: Clock
    counters: Counter[str] = field(default_factory=Counter)
    lease: Lease = field(default_factory=Lease.unlimited)
    """Whether this worker may still write for its partitions (fencing)."""
    definitions: DefinitionsService = field(init=False)
    clickhouse: Client | None = None
    input_handlers: list[InputHandler] = field(default_factory=list)
    previewer: Previewer | None = None
    status_parts: dict[str, Callable[[], Any]] = field(default_factory=dict)
    """Extra sections of ``GET /v1/status``, by name."""
    segments: Any = None
    """The segment runtime (``agents.segments.agent.SegmentRuntime``) once built."""
    delivery: Any = None
    """The delivery worker (``agents.delivery.worker.DeliveryWorker``) once built."""
    http_url: str = ""
    read_last_tick: Callable[[], Awaitable[datetime | None]] | None = None
    """Reads the newest tick on the clock topic (set when running against a broker)."""
    progress: InputProgress = field(default_factory=InputProgress)
    """How far each user input topic partition is handled: what clock ticks wait for."""

    @classmethod
    def from_settings(cls, settings: Settings, bootstrap: str) -> Engine:
        sink = BatchingSink()
        topics = Topics.from_settings(settings)
        engine = cls(
            settings=settings,
            bootstrap=bootstrap,
            topics=topics,
            sink=sink,
            checkpoint=Checkpoint(sink, settings.projection_flush_rows),
            clock=Clock(settings.clock),
            lease=Lease(settings.broker_session_timeout),
        )
        engine.definitions = DefinitionsService(bootstrap, topics.definitions)
        return engine

    def state_table(self, name: str) -> CoalescingTable:
        """A table of the configured store, its changelog topic named after ``name``."""
        settings = self.settings
        return create_table(
            f"{settings.topic_prefix}{name}",
            bootstrap=self.bootstrap,
            partitions=settings.partitions,
            store=settings.table_store,
            data_dir=settings.data_dir / "state",
        )

    def timer_queue(self, name: str) -> Timers:
        """The timer queue that goes with a ``state_table``."""
        settings = self.settings
        return create_timers(
            f"{settings.topic_prefix}{name}", settings.table_store, settings.data_dir / "state"
        )
