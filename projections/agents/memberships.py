"""Projection of the memberships topic into ClickHouse."""

from __future__ import annotations

import faust
import orjson

from projections import rows
from projections.agents.projection import register_projection
from projections.sink import BatchingSink
from streams.engine import Engine


def _rows(event: faust.EventT[bytes], origin: rows.Origin) -> list[rows.Row]:
    return [rows.membership_row(change, origin) for change in orjson.loads(event.value)]


def register(app: faust.App, engine: Engine, sink: BatchingSink) -> None:
    register_projection(
        app, engine, sink, engine.topics.memberships, rows.SEGMENT_MEMBERSHIPS, _rows
    )
