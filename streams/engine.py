"""What the agents and services of one worker process share."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from clickhouse_connect.driver.client import Client

from projections.sink import BatchingSink
from streams.checkpoint import Checkpoint
from streams.clock import Clock
from streams.definitions import DefinitionsService
from streams.settings import Settings
from streams.topics import Topics


@dataclass
class Engine:
    settings: Settings
    bootstrap: str
    topics: Topics
    sink: BatchingSink
    checkpoint: Checkpoint
    clock: Clock
    counters: Counter[str] = field(default_factory=Counter)
    definitions: DefinitionsService = field(init=False)
    clickhouse: Client | None = None
    http_url: str = ""

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
        )
        engine.definitions = DefinitionsService(bootstrap, topics.definitions)
        return engine
