"""The input topics' projection: rows of valid events, tag updates, feedback and device
updates (the device registry's table), and a
forgotten user's rows deleted. The intake agent hands its valid items here (the worker
factory passes this in when the role projects); the rows go through the sink."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from projections import rows
from projections.addresses import AddressMask, address_mask
from projections.forget import delete_user_rows
from projections.sink import BatchingSink
from streams.settings import Settings

DEVICE_UPDATES = "device_updates"
"""The intake's name of device updates (their table is ``devices``)."""

RowOf = Callable[[Any, rows.Origin, datetime], rows.Row]


class InputProjection:
    def __init__(self, sink: BatchingSink, addresses: AddressMask) -> None:
        self._sink = sink
        self._tables: dict[str, tuple[rows.Table, RowOf]] = {
            rows.EVENTS.name: (rows.EVENTS, rows.event_row),
            rows.TAG_UPDATES.name: (
                rows.TAG_UPDATES,
                functools.partial(rows.tag_update_row, addresses=addresses),
            ),
            rows.FEEDBACK.name: (rows.FEEDBACK, rows.feedback_row),
            DEVICE_UPDATES: (
                rows.DEVICES,
                functools.partial(rows.device_row, addresses=addresses),
            ),
        }

    @classmethod
    def from_settings(cls, sink: BatchingSink, settings: Settings) -> InputProjection:
        addresses = address_mask(
            settings.data_dir, settings.pii_key, settings.pii_clear_text, settings.pii_tags
        )
        return cls(sink, addresses)

    def add(
        self, kind: str, partition: int, offset: int, items: Sequence[Any], now: datetime
    ) -> None:
        """Rows of one input record's valid items (``kind`` names the table)."""
        table, row_of = self._tables[kind]
        origin = rows.Origin(partition, offset)
        self._sink.add(table, [row_of(item, origin, now) for item in items])

    async def forget(self, user_id: str) -> None:
        """The user's rows leave ClickHouse, after the rows read before are written."""
        await self._sink.execute(functools.partial(delete_user_rows, user_id=user_id))
