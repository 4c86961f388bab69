"""Projection of the profiles topic (``engine.profiles``) into ClickHouse:
``user_profiles`` and ``user_profile_changes`` (rows: ``projections/profiles.py``)."""

from __future__ import annotations

import faust
import orjson

from projections import rows
from projections.addresses import AddressMask, address_mask
from projections.agents.projection import ToTables, register_tables_projection
from projections.profiles import USER_PROFILE_CHANGES, USER_PROFILES, profile_rows
from projections.sink import BatchingSink
from streams.engine import Engine


def tables_of(addresses: AddressMask) -> ToTables:
    """Rows of a profiles record (a JSON array of ``engine.profiles`` records)."""

    def to_tables(
        event: faust.EventT[bytes], origin: rows.Origin
    ) -> list[tuple[rows.Table, list[rows.Row]]]:
        profile_list: list[rows.Row] = []
        changes: list[rows.Row] = []
        for record in orjson.loads(event.value):
            profile, changed = profile_rows(record, origin, addresses)
            profile_list.append(profile)
            changes.extend(changed)
        return [(USER_PROFILES, profile_list), (USER_PROFILE_CHANGES, changes)]

    return to_tables


def register(app: faust.App, engine: Engine, sink: BatchingSink) -> None:
    settings = engine.settings
    addresses = address_mask(
        settings.data_dir, settings.pii_key, settings.pii_clear_text, settings.pii_tags
    )
    register_tables_projection(
        app, engine, sink, engine.topics.profiles, USER_PROFILES.name, tables_of(addresses)
    )
