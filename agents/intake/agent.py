"""Faust agents for the input topics: decode, validate, then (by role) dead-letter and
hand the valid items to the inputs' projection (``projections.inputs``, passed in by
the worker factory) and to the segment runtime."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import faust
from pydantic import BaseModel

from agents.segments.agent import SegmentRuntime
from engine.codecs import InputCodec
from engine.intake import Source, intake, is_forget
from schemas import DeadLetter, Event, Feedback, TagUpdate
from schemas.devices import DeviceUpdate
from schemas.forget import ForgetUser
from streams.clock import Clock
from streams.engine import Engine
from streams.events import unacked_events

M = TypeVar("M", bound=BaseModel)

EVENTS, TAG_UPDATES, FEEDBACK = "events", "tag_updates", "feedback"
DEVICE_UPDATES = "device_updates"
"""The inputs by name: their counters' and their tables' names."""
SEGMENT_SOURCES = {EVENTS: "e", TAG_UPDATES: "t", FEEDBACK: "f", DEVICE_UPDATES: "d"}
"""How the segment runtime names each input."""


class InputRows(Protocol):
    """The inputs' projection (``projections.inputs.InputProjection``)."""

    def add(
        self, kind: str, partition: int, offset: int, items: Sequence[Any], now: datetime
    ) -> None: ...

    async def forget(self, user_id: str) -> None: ...


@dataclass
class IntakeTargets:
    """Where the intake agents hand the valid items of each record: the inputs'
    projection when this role projects, the segment runtime when it keeps segments."""

    rows: InputRows | None = None
    segments: SegmentRuntime | None = None

    async def to_segments(
        self, clock: Clock, partition: int, offset: int, kind: str, items: Sequence[Any]
    ) -> None:
        """One record's valid items into the segment runtime, each evaluated at its own
        timestamp in simulated time (never before its user's newest event; no clock
        moves)."""
        runtime = self.segments
        if runtime is None:
            return

        def now_of(item: Any) -> datetime:
            return clock.at_input(item.timestamp)

        source = SEGMENT_SOURCES[kind]
        await runtime.apply(partition, offset, source, items, now_of, clock.simulated)


async def send_dead_letters(
    topic: faust.TopicT, letters: Iterable[DeadLetter], partition: int
) -> None:
    """Dead letters into the partition their record was read from, through Faust's
    producer, which is flushed before offsets are committed: none is lost to a crash."""
    for letter in letters:
        await topic.send(
            key=letter.key, value=letter.raw, headers=letter.headers(), partition=partition
        )


def register(app: faust.App, engine: Engine, into: IntakeTargets) -> None:
    dead_letters = app.topic(
        engine.topics.dead_letters, key_serializer="raw", value_serializer="raw"
    )
    limit = engine.settings.max_record_bytes
    topics = engine.topics
    inputs: list[tuple[str, InputCodec[Any], str]] = [
        (topics.events, InputCodec(Event, limit), EVENTS),
        (topics.tags, InputCodec(TagUpdate, limit), TAG_UPDATES),
        (topics.feedback, InputCodec(Feedback, limit), FEEDBACK),
    ]
    if topics.devices:
        inputs.append((topics.devices, InputCodec(DeviceUpdate, limit), DEVICE_UPDATES))
    for topic, codec, kind in inputs:
        _register_input(app, engine, into, dead_letters, topic, codec, kind)


def _register_input(
    app: faust.App,
    engine: Engine,
    into: IntakeTargets,
    dead_letters: faust.TopicT,
    topic_name: str,
    codec: InputCodec[M],
    kind: str,
) -> None:
    topic = app.topic(topic_name, key_serializer="raw", value_serializer="raw")
    counters, checkpoint, clock = engine.counters, engine.checkpoint, engine.clock
    # Another role's workers project and dead-letter when this one only keeps segments.
    projects = engine.settings.projects
    # Forget requests travel on the tags topic, in the user's partition.
    forgets = InputCodec(ForgetUser, codec.max_record_bytes) if kind == TAG_UPDATES else None

    async def process(stream: faust.StreamT[bytes]) -> None:
        # Acks are manual: a record is acknowledged once its rows are written.
        async for event in unacked_events(stream):
            message = event.message
            now = datetime.now(UTC)
            # Dead letters carry the system's time: the newest tick in a simulated run,
            # beside the rows it makes (those keep the wall clock as ingestion time).
            letters_at = clock.now() if clock.simulated and clock.started else now
            source = Source(message.topic, message.partition, message.offset, message.key)
            if forgets is not None and is_forget(message.headers):
                await _forget(engine, into, dead_letters, forgets, event.value, source, letters_at)
                checkpoint.hold(event)
                await checkpoint.keep_up()
                continue
            result = intake(codec, event.value, source, letters_at)
            if projects:
                if result.valid and into.rows is not None:
                    into.rows.add(kind, message.partition, message.offset, result.valid, now)
                await send_dead_letters(dead_letters, result.dead, message.partition)
            if result.valid:
                partition, offset = message.partition, message.offset
                await into.to_segments(engine.clock, partition, offset, kind, result.valid)
            # Counted once handled: a count in /v1/status means the state has it.
            counters[f"{kind}.valid"] += len(result.valid)
            counters[f"{kind}.dead"] += len(result.dead)
            engine.progress.passed(message.topic, message.partition, message.offset)
            checkpoint.hold(event)
            await checkpoint.keep_up()

    app.agent(topic, name=f"intake-{kind}")(process)


async def _forget(
    engine: Engine,
    into: IntakeTargets,
    dead_letters: faust.TopicT,
    codec: InputCodec[ForgetUser],
    raw: bytes | None,
    source: Source,
    now: datetime,
) -> None:
    """Apply a forget record: the user's rows leave ClickHouse (after the rows read
    before it are written), and the segment runtime drops the user's state."""
    result = intake(codec, raw, source, now)
    if engine.settings.projects:
        await send_dead_letters(dead_letters, result.dead, source.partition)
        if into.rows is not None:
            for request in result.valid:
                await into.rows.forget(request.user_id)
    if result.valid and into.segments is not None:
        await into.segments.forget(source.partition, [item.user_id for item in result.valid])
    engine.counters[f"{TAG_UPDATES}.forgotten"] += len(result.valid)
    engine.counters[f"{TAG_UPDATES}.dead"] += len(result.dead)
