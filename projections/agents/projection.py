"""The shape every projection agent shares: read a topic with manual acks, turn each
record into rows, hand them to the sink, acknowledge once they are written."""

from __future__ import annotations

import logging
from collections.abc import Callable

import faust

from projections import rows
from projections.sink import BatchingSink
from streams.engine import Engine
from streams.events import unacked_events

log = logging.getLogger(__name__)

ToRows = Callable[[faust.EventT[bytes], rows.Origin], list[rows.Row]]
"""Rows of one record (``projections.journeys.RecordRows``); raises KeyError, TypeError
or ValueError for a record it cannot read, which is logged and skipped (these topics
are written by the engine itself)."""


def register_projection(
    app: faust.App,
    engine: Engine,
    sink: BatchingSink,
    topic_name: str,
    table: rows.Table,
    to_rows: ToRows,
) -> None:
    topic = app.topic(topic_name, key_serializer="raw", value_serializer="raw")
    checkpoint = engine.checkpoint

    async def project(stream: faust.StreamT[bytes]) -> None:
        async for event in unacked_events(stream):
            message = event.message
            try:
                projected = to_rows(event, rows.Origin(message.partition, message.offset))
            except (KeyError, TypeError, ValueError) as error:
                log.warning(
                    "%s %s:%s not projected: %s",
                    topic_name,
                    message.partition,
                    message.offset,
                    error,
                )
            else:
                sink.add(table, projected)
            checkpoint.hold(event)
            await checkpoint.keep_up()

    app.agent(topic, name=f"project-{table.name}")(project)
