"""What the agents and services of one worker process share: the typed context the
agents and projection agents take (``Engine``). What only the process as a whole
holds (the Faust app, the segment runtime, the delivery worker, the ClickHouse side,
the HTTP API) is ``worker.app.System``, built by the worker factory."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from streams.checkpoint import Checkpoint, Sink
from streams.clock import Clock, InputProgress
from streams.definitions import DefinitionsService
from streams.settings import Settings
from streams.state import CoalescingTable, create_table
from streams.state.lease import Lease
from streams.state.timers import Timers, create_timers
from streams.topics import Topics


class FeedbackRelease(Protocol):
    """What the segment clock needs of this process's delivery worker
    (``agents.delivery.worker.DeliveryWorker``) in simulated time: the feedback due by
    a tick is released, and on the broker, before the tick's timers fire."""

    async def release(self, partition: int, now: datetime) -> object: ...

    async def feedback_offset(self, partition: int) -> int | None: ...


class NoRows:
    """The sink of a process that projects nothing."""

    pending = 0

    async def flush(self) -> None:
        return None


@dataclass
class Engine:
    settings: Settings
    bootstrap: str
    topics: Topics
    checkpoint: Checkpoint
    clock: Clock
    counters: Counter[str] = field(default_factory=Counter)
    lease: Lease = field(default_factory=Lease.unlimited)
    """Whether this worker may still write for its partitions (fencing)."""
    definitions: DefinitionsService = field(init=False)
    status_parts: dict[str, Callable[[], object]] = field(default_factory=dict)
    """Extra sections of ``GET /v1/status``, by name."""
    delivery: FeedbackRelease | None = None
    """The delivery worker of this process, when its role delivers."""
    read_last_tick: Callable[[], Awaitable[datetime | None]] | None = None
    """Reads the newest tick on the clock topic (set when running against a broker)."""
    progress: InputProgress = field(default_factory=InputProgress)
    """How far each user input topic partition is handled: what clock ticks wait for."""

    @classmethod
    def from_settings(cls, settings: Settings, bootstrap: str, sink: Sink | None = None) -> Engine:
        """``sink``: where this process's projected rows wait, written before each
        checkpoint acknowledges its records (none: a process that projects nothing)."""
        topics = Topics.from_settings(settings)
        engine = cls(
            settings=settings,
            bootstrap=bootstrap,
            topics=topics,
            checkpoint=Checkpoint(sink or NoRows(), settings.projection_flush_rows),
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
