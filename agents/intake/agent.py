"""Faust agents for the input topics: decode, validate, then (by role) project and
dead-letter, and hand the valid items to the input handlers (segments)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, TypeVar

import faust
from pydantic import BaseModel

from engine.intake import FORGET, Source, intake, is_forget
from projections import rows
from projections.addresses import CLEAR, AddressMask, address_mask
from projections.forget import delete_user_rows
from schemas import DeadLetter, Event, Feedback, TagUpdate
from schemas.forget import ForgetUser
from streams.checkpoint import unacked_events
from streams.codecs import InputCodec
from streams.engine import Engine

M = TypeVar("M", bound=BaseModel)
RowOf = Callable[[Any, rows.Origin, datetime], rows.Row]


async def send_dead_letters(
    topic: faust.TopicT, letters: Iterable[DeadLetter], partition: int
) -> None:
    """Dead letters into the partition their record was read from, through Faust's
    producer, which is flushed before offsets are committed: none is lost to a crash."""
    for letter in letters:
        await topic.send(
            key=letter.key, value=letter.raw, headers=letter.headers(), partition=partition
        )


def register(app: faust.App, engine: Engine) -> None:
    dead_letters = app.topic(
        engine.topics.dead_letters, key_serializer="raw", value_serializer="raw"
    )
    limit = engine.settings.max_record_bytes
    _register_input(
        app,
        engine,
        dead_letters,
        engine.topics.events,
        InputCodec(Event, limit),
        rows.EVENTS,
        rows.event_row,
    )
    _register_input(
        app,
        engine,
        dead_letters,
        engine.topics.tags,
        InputCodec(TagUpdate, limit),
        rows.TAG_UPDATES,
        functools.partial(rows.tag_update_row, addresses=_address_mask(engine)),
    )
    _register_input(
        app,
        engine,
        dead_letters,
        engine.topics.feedback,
        InputCodec(Feedback, limit),
        rows.FEEDBACK,
        rows.feedback_row,
    )


def _address_mask(engine: Engine) -> AddressMask:
    settings = engine.settings
    if not settings.projects:
        return CLEAR  # nothing projected here
    return address_mask(
        settings.data_dir, settings.pii_key, settings.pii_clear_text, settings.pii_tags
    )


def _register_input(
    app: faust.App,
    engine: Engine,
    dead_letters: faust.TopicT,
    topic_name: str,
    codec: InputCodec[M],
    table: rows.Table,
    row_of: RowOf,
) -> None:
    topic = app.topic(topic_name, key_serializer="raw", value_serializer="raw")
    counters, sink, checkpoint = engine.counters, engine.sink, engine.checkpoint
    # Another role's workers project and dead-letter when this one only keeps segments.
    projects = engine.settings.projects
    # Forget requests travel on the tags topic, in the user's partition.
    forgets = InputCodec(ForgetUser, codec.max_record_bytes) if table is rows.TAG_UPDATES else None

    async def process(stream: faust.StreamT[bytes]) -> None:
        # Acks are manual: a record is acknowledged once its rows are written.
        async for event in unacked_events(stream):
            message = event.message
            now = datetime.now(UTC)
            source = Source(message.topic, message.partition, message.offset, message.key)
            if forgets is not None and is_forget(message.headers):
                await _forget(engine, dead_letters, forgets, event.value, source, now)
                checkpoint.hold(event)
                await checkpoint.keep_up()
                continue
            result = intake(codec, event.value, source, now)
            if projects:
                if result.valid:
                    origin = rows.Origin(message.partition, message.offset)
                    sink.add(table, [row_of(item, origin, now) for item in result.valid])
                await send_dead_letters(dead_letters, result.dead, message.partition)
            if result.valid:
                for handle in engine.input_handlers:
                    await handle(message.partition, message.offset, table.name, result.valid)
            # Counted once handled: a count in /v1/status means the state has it.
            counters[f"{table.name}.valid"] += len(result.valid)
            counters[f"{table.name}.dead"] += len(result.dead)
            engine.progress.passed(message.topic, message.partition, message.offset)
            checkpoint.hold(event)
            await checkpoint.keep_up()

    app.agent(topic, name=f"intake-{table.name}")(process)


async def _forget(
    engine: Engine,
    dead_letters: faust.TopicT,
    codec: InputCodec[ForgetUser],
    raw: bytes | None,
    source: Source,
    now: datetime,
) -> None:
    """Apply a forget record: the user's rows leave ClickHouse (after the rows read
    before it are written), and the input handlers (segments) drop their state."""
    result = intake(codec, raw, source, now)
    if engine.settings.projects:
        await send_dead_letters(dead_letters, result.dead, source.partition)
        for request in result.valid:
            await engine.sink.execute(functools.partial(delete_user_rows, user_id=request.user_id))
    if result.valid:
        for handle in engine.input_handlers:
            await handle(source.partition, source.offset, FORGET, result.valid)
    engine.counters[f"{rows.TAG_UPDATES.name}.forgotten"] += len(result.valid)
    engine.counters[f"{rows.TAG_UPDATES.name}.dead"] += len(result.dead)
