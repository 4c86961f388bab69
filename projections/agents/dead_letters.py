"""Projection of the dead-letter topic into ClickHouse."""

from __future__ import annotations

from collections.abc import Mapping

import faust

from projections import rows
from projections.agents.projection import register_projection
from projections.sink import BatchingSink
from schemas import DeadLetter
from streams.engine import Engine


def _rows(event: faust.EventT[bytes], origin: rows.Origin) -> list[rows.Row]:
    message = event.message
    headers = message.headers or []
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    # A record without our headers (written by someone else) raises: not projected.
    letter = DeadLetter.from_record(event.value or b"", message.key, pairs)
    return [rows.dead_letter_row(letter, origin)]


def register(app: faust.App, engine: Engine, sink: BatchingSink) -> None:
    register_projection(app, engine, sink, engine.topics.dead_letters, rows.DEAD_LETTERS, _rows)
