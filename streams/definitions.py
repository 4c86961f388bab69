"""The definitions service: every worker folds the whole definitions topic into its
registry, reading with a plain consumer (no group), so that all workers see every
definition in the same order."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from schemas.definitions import (
    DEFINITION_EVENT,
    Definitions,
    JourneyApplied,
    JourneyStatusChanged,
    SegmentApplied,
    SegmentDeleted,
)
from streams.background import Background
from streams.topics import FETCH_MAX_WAIT_MS

log = logging.getLogger(__name__)

Listener = Callable[[SegmentApplied | SegmentDeleted], Awaitable[None]]
JourneyListener = Callable[[JourneyApplied | JourneyStatusChanged], Awaitable[None]]


class DefinitionsService(Background):
    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.registry = Definitions()
        self.ready = asyncio.Event()
        self.listeners: list[Listener] = []
        self.journey_listeners: list[JourneyListener] = []
        self._folded: asyncio.Condition | None = None

    async def wait_for_version(self, segment_id: str, version: int, timeout: float) -> bool:
        """Wait until this worker has folded ``version`` of a segment (read your writes)."""
        return await self.wait_for(
            lambda: self.registry.next_version(segment_id) > version, timeout
        )

    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``predicate`` holds on the registry, re-checked after each folded
        event; False when ``timeout`` passes first."""
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(predicate), timeout)
            except TimeoutError:
                return False
        return True

    @property
    def _changed(self) -> asyncio.Condition:
        # Made on first use, inside the running loop, whether a waiter or the follower
        # comes first.
        if self._folded is None:
            self._folded = asyncio.Condition()
        return self._folded

    async def run(self) -> None:
        """Fold the topic from its start, then follow it (until cancelled)."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,  # see streams/topics.py
        )
        await consumer.start()
        try:
            partitions = [
                TopicPartition(self.topic, p)
                for p in sorted(consumer.partitions_for_topic(self.topic) or {0})
            ]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            ends = await consumer.end_offsets(partitions)
            while True:
                batches = await consumer.getmany(timeout_ms=200, max_records=1000)
                for messages in batches.values():
                    for message in messages:
                        await self._fold(message.value, message.offset)
                positions = [await consumer.position(tp) for tp in partitions]
                if not self.ready.is_set() and all(
                    position >= ends[tp] for position, tp in zip(positions, partitions, strict=True)
                ):
                    log.info(
                        "definitions: %d segments, %d presets, %d journeys",
                        len(self.registry.segments),
                        len(self.registry.presets),
                        len(self.registry.journeys),
                    )
                    self.ready.set()
        finally:
            await consumer.stop()

    async def _fold(self, value: bytes | None, offset: int) -> None:
        if value is None:
            return  # a tombstone: compaction's business, deletions are explicit records
        try:
            event = DEFINITION_EVENT.validate_json(value)
        except ValidationError as error:
            log.error("definitions topic offset %d is not a definition event: %s", offset, error)
            return
        self.registry.fold(event)
        if isinstance(event, SegmentApplied | SegmentDeleted):
            for listener in self.listeners:
                await listener(event)
        elif isinstance(event, JourneyApplied | JourneyStatusChanged):
            for journey_listener in self.journey_listeners:
                await journey_listener(event)
        # Preset events need no listener: the registry is read where content is rendered.
        async with self._changed:
            self._changed.notify_all()
