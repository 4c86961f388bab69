"""Projection of the journeys' send-commands and journey-activity topics into ClickHouse
(rows: ``projections/journeys.py``)."""

from __future__ import annotations

import faust

from projections import rows
from projections.agents.projection import register_projection
from projections.journeys import activity_row, command_row, item_rows
from projections.sink import BatchingSink
from schemas.commands import JourneyActivity, SendCommand
from streams.engine import Engine


def register(app: faust.App, engine: Engine, sink: BatchingSink) -> None:
    topics = engine.topics
    commands = item_rows(topics.send_commands, SendCommand, rows.send_command_row, command_row)
    activity = item_rows(
        topics.journey_activity, JourneyActivity, rows.journey_activity_row, activity_row
    )
    register_projection(app, engine, sink, topics.send_commands, rows.SEND_COMMANDS, commands)
    register_projection(app, engine, sink, topics.journey_activity, rows.JOURNEY_ACTIVITY, activity)
