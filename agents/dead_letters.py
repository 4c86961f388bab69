"""Faust agent projecting the dead-letter topic into ClickHouse."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import faust

from projections import rows
from schemas import DeadLetter
from streams.checkpoint import unacked_events
from streams.engine import Engine

log = logging.getLogger(__name__)


def register(app: faust.App, engine: Engine) -> None:
    topic = app.topic(engine.topics.dead_letters, key_serializer="raw", value_serializer="raw")
    sink, checkpoint = engine.sink, engine.checkpoint

    async def project(stream: faust.StreamT[bytes]) -> None:
        async for event in unacked_events(stream):
            message = event.message
            try:
                headers = message.headers or []
                pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
                letter = DeadLetter.from_record(event.value, message.key, pairs)
            except (KeyError, ValueError) as error:
                # Written by someone else without our headers: nothing to project.
                log.warning(
                    "dead letter at %s:%s has no reach headers (%s)",
                    message.partition,
                    message.offset,
                    error,
                )
            else:
                origin = rows.Origin(message.partition, message.offset)
                sink.add(rows.DEAD_LETTERS, [rows.dead_letter_row(letter, origin)])
            checkpoint.hold(event)
            if checkpoint.due:
                await checkpoint.commit()

    app.agent(topic, name="project-dead-letters")(project)
