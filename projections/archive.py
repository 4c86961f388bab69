"""The archive read back for a back-test: every user's inputs (events, tag updates,
feedback) from the projections' tables, streamed in (user, time) order in ClickHouse's
native columnar blocks, one user's timeline at a time (``engine.backtest.Timeline``).

Read only: SELECTs with FINAL (a replayed input is one row), values through
server-side parameters. Addresses come back as the projection stored them (keyed hashes
unless configured in clear): a back-test needs to know that a user has an address, not
what it is."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from clickhouse_connect.driver.client import Client

from engine.backtest import Backtest, Report, Timeline
from engine.processor import UserInput
from engine.time import from_ms
from projections import rows
from schemas.events import Event
from schemas.feedback import Feedback
from schemas.tags import TagUpdate

TAGS, EVENTS, FEEDBACK = 0, 1, 2
"""The kinds, in the order inputs of one user at one instant are applied."""

_INPUTS = """
SELECT kind, user_id, ts, id, a, b, c, d FROM (
    SELECT 0 AS kind, user_id, ts, update_id AS id, toString(op) AS a, tags AS b,
           '' AS c, '' AS d, source_partition AS p, source_offset AS o
    FROM {database:Identifier}.tag_updates FINAL
    WHERE ts < {end:DateTime64(3, 'UTC')} %(users)s
    UNION ALL
    SELECT 1, user_id, ts, event_id, toString(name), attributes, '', '',
           source_partition, source_offset
    FROM {database:Identifier}.events FINAL
    WHERE ts < {end:DateTime64(3, 'UTC')} %(users)s
    UNION ALL
    SELECT 2, user_id, ts, feedback_id, toString(status), command_id, toString(channel), reason,
           source_partition, source_offset
    FROM {database:Identifier}.feedback FINAL
    WHERE ts < {end:DateTime64(3, 'UTC')} %(users)s
)
ORDER BY user_id, ts, kind, p, o
"""

_FIRST_USERS = """
AND user_id IN (
    SELECT user_id FROM (
        SELECT DISTINCT user_id FROM {database:Identifier}.events
        WHERE ts < {end:DateTime64(3, 'UTC')}
        UNION DISTINCT
        SELECT DISTINCT user_id FROM {database:Identifier}.tag_updates
        WHERE ts < {end:DateTime64(3, 'UTC')}
    ) ORDER BY user_id LIMIT {limit:UInt64}
)"""

_SEGMENT_USERS = """
AND user_id IN (
    SELECT DISTINCT user_id FROM {database:Identifier}.segment_memberships FINAL
    WHERE segment_id = {segment:String} AND at < {end:DateTime64(3, 'UTC')}
)"""


@dataclass(frozen=True, slots=True)
class Selection:
    """Which users to read: the first ``users`` by id, or those ever in ``segment``
    (as the archive's memberships say) before the end; neither: everyone."""

    users: int | None = None
    segment: str | None = None


def count_inputs(
    client: Client, database: str, end: datetime, selection: Selection = Selection()
) -> int:
    """How many inputs ``timelines`` will read (for a progress bar)."""
    sql, parameters = _query(database, end, selection)
    counted = client.query(f"SELECT count() FROM ({sql})", parameters=parameters)
    return int(counted.result_rows[0][0])


def timelines(
    client: Client,
    database: str,
    end: datetime,
    selection: Selection = Selection(),
    block_rows: int = 65_536,
) -> Iterator[Timeline]:
    """Every selected user's inputs before ``end``, user after user (by id), each in
    time order."""
    sql, parameters = _query(database, end, selection)
    settings = {"max_block_size": block_rows}
    user: str | None = None
    found: list[UserInput] = []
    with client.query_column_block_stream(sql, parameters=parameters, settings=settings) as blocks:
        for block in blocks:
            kinds, users, stamps, ids, a, b, c, d = block
            for index in range(len(kinds)):
                who = users[index]
                if who != user:
                    if user is not None:
                        yield Timeline(user, found)
                    user, found = who, []
                found.append(
                    _item(
                        kinds[index],
                        who,
                        stamps[index],
                        ids[index],
                        a[index],
                        b[index],
                        c[index],
                        d[index],
                    )
                )
    if user is not None:
        yield Timeline(user, found)


def _query(database: str, end: datetime, selection: Selection) -> tuple[str, dict[str, Any]]:
    parameters: dict[str, Any] = {"database": database, "end": end}
    users = ""
    if selection.segment is not None:
        users = _SEGMENT_USERS
        parameters["segment"] = selection.segment
    elif selection.users is not None:
        users = _FIRST_USERS
        parameters["limit"] = selection.users
    return _INPUTS % {"users": users}, parameters


def _item(kind: int, user: str, ts: datetime, id: str, a: str, b: str, c: str, d: str) -> UserInput:
    if kind == EVENTS:
        return Event.model_validate(
            {
                "user_id": user,
                "name": a,
                "timestamp": ts,
                "attributes": orjson.loads(b),
                "event_id": id,
            }
        )
    if kind == TAGS:
        return TagUpdate.model_validate(
            {"user_id": user, "op": a, "tags": orjson.loads(b), "timestamp": ts, "update_id": id}
        )
    return Feedback.model_validate(
        {
            "command_id": b,
            "user_id": user,
            "status": a,
            "timestamp": ts,
            "channel": c or None,
            "reason": d or None,
            "feedback_id": id,
        }
    )


def store_inputs(
    client: Client, items: Iterable[UserInput], now: datetime, batch: int = 100_000
) -> int:
    """Write ``items`` into the archive's tables as the projections write them (for
    tests and benchmarks that need an archive); returns how many."""
    tables = {Event: rows.EVENTS, TagUpdate: rows.TAG_UPDATES, Feedback: rows.FEEDBACK}
    pending: dict[rows.Table, list[rows.Row]] = {table: [] for table in tables.values()}
    written = 0

    def flush(table: rows.Table) -> None:
        found = pending[table]
        if found:
            client.insert(
                table.name,
                list(zip(*found, strict=True)),
                column_names=list(table.columns),
                column_oriented=True,
                settings={"throw_on_max_partitions_per_insert_block": 0},
            )
            pending[table] = []

    for offset, item in enumerate(items):
        origin = rows.Origin(0, offset)
        if isinstance(item, Event):
            table, row = rows.EVENTS, rows.event_row(item, origin, now)
        elif isinstance(item, TagUpdate):
            table, row = rows.TAG_UPDATES, rows.tag_update_row(item, origin, now)
        elif isinstance(item, Feedback):
            table, row = rows.FEEDBACK, rows.feedback_row(item, origin, now)
        else:  # device updates: the archive keeps no tokens to replay
            raise TypeError(f"the archive holds no {type(item).__name__} records")
        pending[table].append(row)
        written += 1
        if len(pending[table]) >= batch:
            flush(table)
    for table in tables.values():
        flush(table)
    return written


def replay(
    client: Client,
    database: str,
    tests: Sequence[Backtest],
    selection: Selection = Selection(),
    progress: Callable[[int], None] | None = None,
) -> list[Report]:
    """Read the archive once, up to the latest end of ``tests``, and replay each user
    through every one of them (a comparison reads the archive once)."""
    end = max(from_ms(test.end_ms) for test in tests)
    for timeline in timelines(client, database, end, selection):
        for test in tests:
            test.user(timeline)
        if progress is not None:
            progress(len(timeline.inputs))
    return [test.report for test in tests]
