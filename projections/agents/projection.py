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


ToTables = Callable[[faust.EventT[bytes], rows.Origin], list[tuple[rows.Table, list[rows.Row]]]]
"""Rows of one record for several tables (as ``ToRows``, per table)."""


def register_projection(
    app: faust.App,
    engine: Engine,
    sink: BatchingSink,
    topic_name: str,
    table: rows.Table,
    to_rows: ToRows,
) -> None:
    def to_tables(
        event: faust.EventT[bytes], origin: rows.Origin
    ) -> list[tuple[rows.Table, list[rows.Row]]]:
        return [(table, to_rows(event, origin))]

    register_tables_projection(app, engine, sink, topic_name, table.name, to_tables)


def register_tables_projection(
    app: faust.App,
    engine: Engine,
    sink: BatchingSink,
    topic_name: str,
    name: str,
    to_tables: ToTables,
) -> None:
    """``register_projection`` of a topic whose records make rows of several tables."""
    topic = app.topic(topic_name, key_serializer="raw", value_serializer="raw")
    checkpoint = engine.checkpoint

    async def project(stream: faust.StreamT[bytes]) -> None:
        async for event in unacked_events(stream):
            message = event.message
            try:
                projected = to_tables(event, rows.Origin(message.partition, message.offset))
            except (KeyError, TypeError, ValueError) as error:
                log.warning(
                    "%s %s:%s not projected: %s",
                    topic_name,
                    message.partition,
                    message.offset,
                    error,
                )
            else:
                for table, table_rows in projected:
                    sink.add(table, table_rows)
            checkpoint.hold(event)
            await checkpoint.keep_up()

    app.agent(topic, name=f"project-{name}")(project)
