"""Projection of the journeys' send-commands and journey-activity topics into ClickHouse.

A record on either topic is a JSON array of one partition's items (``SendCommand`` /
``JourneyActivity`` fields), as on the memberships topic.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import faust
import orjson
from pydantic import BaseModel, TypeAdapter, ValidationError

from agents.projection import ToRows, register_projection
from projections import rows
from schemas.commands import JourneyActivity, SendCommand
from streams.engine import Engine

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)


def item_rows(topic: str, model: type[M], to_row: Callable[[M, rows.Origin], rows.Row]) -> ToRows:
    """Rows of a record's valid items. Items are validated although the engine wrote
    them: a value the table cannot take would fail the insert, and the sink retries a
    failed insert forever. An invalid item is logged and left out; the others stay."""

    whole = TypeAdapter(list[model])  # type: ignore[valid-type]

    def to_rows(event: faust.EventT[bytes], origin: rows.Origin) -> list[rows.Row]:
        try:
            # The usual case, in one pydantic-core call; item by item only to single
            # out what is invalid.
            return [to_row(item, origin) for item in whole.validate_json(event.value)]
        except ValidationError:
            pass
        items = orjson.loads(event.value)
        if not isinstance(items, list):
            raise TypeError(f"expected a JSON array, got {type(items).__name__}")
        found = []
        for index, item in enumerate(items):
            try:
                found.append(to_row(model.model_validate(item), origin))
            except ValidationError as error:
                position = f"{origin.partition}:{origin.offset}[{index}]"
                log.warning("%s %s not projected: %s", topic, position, error)
        return found

    return to_rows


def register(app: faust.App, engine: Engine) -> None:
    topics = engine.topics
    commands = item_rows(topics.send_commands, SendCommand, rows.send_command_row)
    activity = item_rows(topics.journey_activity, JourneyActivity, rows.journey_activity_row)
    register_projection(app, engine, topics.send_commands, rows.SEND_COMMANDS, commands)
    register_projection(app, engine, topics.journey_activity, rows.JOURNEY_ACTIVITY, activity)
