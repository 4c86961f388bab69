"""Faust agent projecting the memberships topic into ClickHouse."""

from __future__ import annotations

import logging

import faust
from pydantic import ValidationError

from projections import rows
from schemas.memberships import MEMBERSHIP_BATCH
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
                changes = MEMBERSHIP_BATCH.validate_json(event.value)
            except ValidationError as error:
                log.error(
                    "memberships %s:%s unreadable: %s", message.partition, message.offset, error
                )
            else:
                origin = rows.Origin(message.partition, message.offset)
                sink.add(
                    rows.SEGMENT_MEMBERSHIPS, [rows.membership_row(c, origin) for c in changes]
                )
            checkpoint.hold(event)
            if checkpoint.due:
                await checkpoint.commit()

    app.agent(topic, name="project-memberships")(project)
