"""Faust agent projecting the memberships topic into ClickHouse."""

from __future__ import annotations

import logging

import faust
import orjson

from projections import rows
from streams.checkpoint import unacked_events
from streams.engine import Engine

log = logging.getLogger(__name__)


def register(app: faust.App, engine: Engine) -> None:
    topic = app.topic(engine.topics.memberships, key_serializer="raw", value_serializer="raw")
    sink, checkpoint = engine.sink, engine.checkpoint

    async def project(stream: faust.StreamT[bytes]) -> None:
        async for event in unacked_events(stream):
            message = event.message
            try:
                changes = orjson.loads(event.value)
                origin = rows.Origin(message.partition, message.offset)
                projected = [rows.membership_row(change, origin) for change in changes]
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as error:
                log.error(
                    "memberships %s:%s unreadable: %s", message.partition, message.offset, error
                )
            else:
                sink.add(rows.SEGMENT_MEMBERSHIPS, projected)
            checkpoint.hold(event)
            if checkpoint.due:
                await checkpoint.commit()

    app.agent(topic, name="project-memberships")(project)
