"""Row builders: one contract model and its Kafka position -> one table row."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from projections import rows
from projections.journeys import item_rows
from projections.rows import Origin, Table
from schemas import DeadLetter, DeadLetterReason, Event, Feedback, TagUpdate
from schemas.commands import JourneyActivity, SendCommand, command_id

NOW = datetime(2024, 5, 1, 10, 0, 5, tzinfo=UTC)
TS = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
ORIGIN = Origin(partition=3, offset=1234)


def as_dict(table: Table, row: rows.Row) -> dict[str, Any]:
    assert len(row) == len(table.columns)
    return dict(zip(table.columns, row, strict=True))


def test_event_row() -> None:
    event = Event.model_validate(
        {
            "user_id": "u",
            "name": "Purchase",
            "timestamp": "2024-05-01T12:00:00+02:00",
            "attributes": {
                "sku": "A-1",
                "n": 2,
                "ok": True,
                "tags": ["a", 1],
                "price": {"type": "price", "amount": "19.90", "currency": "EUR"},
                "since": {"type": "date", "value": "2024-01-01T02:00:00+02:00"},
                "app": {"type": "version", "value": "4.12.1"},
            },
        }
    )
    row = as_dict(rows.EVENTS, rows.event_row(event, ORIGIN, NOW))
    assert row == {
        "event_id": event.event_id,
        "user_id": "u",
        "name": "Purchase",
        "ts": TS,
        "attributes": row["attributes"],
        "source_partition": 3,
        "source_offset": 1234,
        "ingested_at": NOW,
    }
    assert orjson.loads(row["attributes"]) == {
        "sku": "A-1",
        "n": 2,
        "ok": True,
        "tags": ["a", 1],
        "price": {"type": "price", "amount": "19.90", "currency": "EUR"},
        "since": {"type": "date", "value": "2024-01-01T00:00:00Z"},
        "app": {"type": "version", "value": "4.12.1"},
    }


def test_event_without_attributes_has_an_empty_object() -> None:
    event = Event(user_id="u", name="n", timestamp=TS)
    assert as_dict(rows.EVENTS, rows.event_row(event, ORIGIN, NOW))["attributes"] == "{}"


@pytest.mark.parametrize(
    ("data", "op", "tags"),
    [
        ({"op": "set", "tags": {"Plan": "pro"}}, "set", {"Plan": "pro"}),
        ({"op": "unset", "tags": ["Coupon"]}, "unset", {"Coupon": None}),
        ({"op": "increment", "tags": {"Sessions": -1.5}}, "increment", {"Sessions": -1.5}),
        (
            {"tags": {"Cart": {"type": "price", "amount": "1", "currency": "USD"}}},
            "set",
            {"Cart": {"type": "price", "amount": "1", "currency": "USD"}},
        ),
    ],
)
def test_tag_update_row(data: dict[str, Any], op: str, tags: dict[str, Any]) -> None:
    update = TagUpdate.model_validate({"user_id": "u", "timestamp": TS, **data})
    row = as_dict(rows.TAG_UPDATES, rows.tag_update_row(update, ORIGIN, NOW))
    assert row["update_id"] == update.update_id
    assert (row["user_id"], row["op"], row["ts"]) == ("u", op, TS)
    assert orjson.loads(row["tags"]) == tags
    assert (row["source_partition"], row["source_offset"], row["ingested_at"]) == (3, 1234, NOW)


@pytest.mark.parametrize(
    ("optional", "channel", "reason"),
    [({}, "", ""), ({"channel": "push", "reason": "mailbox full"}, "push", "mailbox full")],
)
def test_feedback_row(optional: dict[str, str], channel: str, reason: str) -> None:
    feedback = Feedback.model_validate(
        {
            "command_id": "cmd-1",
            "user_id": "u",
            "status": "bounced",
            "timestamp": 1714557600000,
            **optional,
        }
    )
    row = as_dict(rows.FEEDBACK, rows.feedback_row(feedback, ORIGIN, NOW))
    assert row == {
        "feedback_id": feedback.feedback_id,
        "command_id": "cmd-1",
        "user_id": "u",
        "status": "bounced",
        "channel": channel,
        "reason": reason,
        "ts": TS,
        "source_partition": 3,
        "source_offset": 1234,
        "ingested_at": NOW,
        # A command id no journey made names no journey step.
        "journey_id": "",
        "journey_version": 0,
        "run": "",
        "step": "",
    }


def test_feedback_row_names_the_journey_step_of_its_command() -> None:
    command = command_id("welcome", 3, "r7", "u", "greet", 2)
    feedback = Feedback(command_id=command, user_id="u", status="bounced", timestamp=TS)
    row = as_dict(rows.FEEDBACK, rows.feedback_row(feedback, ORIGIN, NOW))
    assert (row["journey_id"], row["journey_version"], row["run"], row["step"]) == (
        "welcome",
        3,
        "r7",
        "greet",
    )
    assert row["status"] == "bounced"


@pytest.mark.parametrize(
    ("index", "raw", "column_index", "column_raw"),
    [
        (None, b'{"user_id": 42}', -1, '{"user_id": 42}'),
        (0, b"[1]", 0, "[1]"),
        (17, b"\xff\xfeok", 17, "\ufffd\ufffdok"),  # not UTF-8: replaced, not refused
    ],
)
def test_dead_letter_row(index: int | None, raw: bytes, column_index: int, column_raw: str) -> None:
    letter = DeadLetter(
        raw=raw,
        key=b"u",
        source_topic="reach.events",
        source_partition=2,
        source_offset=99,
        source_index=index,
        reason=DeadLetterReason.WRONG_TYPE,
        detail="user_id: bad",
        at=NOW,
    )
    row = as_dict(rows.DEAD_LETTERS, rows.dead_letter_row(letter, Origin(5, 7)))
    assert row == {
        "source_topic": "reach.events",
        "source_partition": 2,
        "source_offset": 99,
        "source_index": column_index,
        "reason": "wrong_type",
        "detail": "user_id: bad",
        "raw": column_raw,
        "at": NOW,
        "dlq_partition": 5,
        "dlq_offset": 7,
    }


TABLES = [
    (rows.EVENTS, "010_events.sql"),
    (rows.TAG_UPDATES, "020_tag_updates.sql"),
    (rows.FEEDBACK, "030_feedback.sql"),
    (rows.DEVICES, "150_devices.sql"),
    (rows.DEAD_LETTERS, "040_dead_letters.sql"),
    (rows.SEGMENT_MEMBERSHIPS, "050_segment_memberships.sql"),
    (rows.SEND_COMMANDS, "070_send_commands.sql"),
    (rows.JOURNEY_ACTIVITY, "080_journey_activity.sql"),
]


@pytest.mark.parametrize("table", [table for table, _ in TABLES])
def test_tables_have_distinct_columns(table: Table) -> None:
    assert len(set(table.columns)) == len(table.columns)


SQL = Path(rows.__file__).parent / "sql"


@pytest.mark.parametrize(("table", "sql_file"), TABLES)
def test_row_columns_match_the_table_definition(table: Table, sql_file: str) -> None:
    text = (SQL / sql_file).read_text()
    start = text.index(f".{table.name}\n(") + len(table.name) + 3
    body = text[start : text.index("\n)", start)]
    columns = tuple(re.findall(r"^\s+(?!INDEX )(\w+)\s+\w", body, flags=re.MULTILINE))
    assert columns == table.columns


@pytest.mark.parametrize(
    "at", ["2026-11-02T10:00:00Z", "2026-11-02T10:00:00.123456Z", "2026-11-02T10:00:00.5Z"]
)
def test_membership_row_identity_matches_the_contract_model(at: str) -> None:
    from datetime import UTC, datetime

    import orjson

    from schemas.memberships import MembershipChanged

    moment = datetime.fromisoformat(at)
    model = MembershipChanged(
        segment_id="vip", user_id="u1", change="entered", at=moment, version=3
    )
    # As the segment runtime writes it: orjson with OPT_UTC_Z.
    [written] = orjson.loads(
        orjson.dumps(
            [
                {
                    "segment_id": "vip",
                    "user_id": "u1",
                    "change": "entered",
                    "at": moment.astimezone(UTC),
                    "version": 3,
                }
            ],
            option=orjson.OPT_UTC_Z,
        )
    )
    row = rows.membership_row(written, rows.Origin(1, 2))
    assert row[0] == model.change_id
    assert row[1:6] == ("vip", "u1", "entered", moment, 3)


# --- the journeys' topics -------------------------------------------------------------

COMMAND = {
    "command_id": "welcome:1:r1:greet:1:0123456789abcdef",
    "user_id": "u1",
    "channel": "push",
    "preset": "welcome-push",
    "journey_id": "welcome",
    "journey_version": 1,
    "run": "r1",
    "step": "greet",
    "visit": 1,
    "properties": {"plan": "pro", "n": 2},
    "at": "2024-05-01T10:00:00Z",
}
ACTIVITY = {
    "journey_id": "welcome",
    "journey_version": 2,
    "run": "r1",
    "user_id": "u1",
    "step": "greet",
    "activity": "clicked",
    "at": "2024-05-01T10:00:00Z",
    "command_id": "welcome:2:r1:greet:1:0123456789abcdef",
}

NO_DIMENSIONS = {"country": "", "language": "", "timezone": "", "variant": "", "event_at": TS}


def test_send_command_row() -> None:
    command = SendCommand.model_validate(COMMAND)
    row = as_dict(rows.SEND_COMMANDS, rows.send_command_row(command, ORIGIN))
    assert row == {
        **COMMAND,
        "url": "",
        "properties": row["properties"],
        "at": TS,
        "source_partition": 3,
        "source_offset": 1234,
        # A record of an earlier version: no dimensions, its own instant as event_at.
        **NO_DIMENSIONS,
    }
    assert orjson.loads(row["properties"]) == {"plan": "pro", "n": 2}


def test_webhook_command_row_has_an_empty_preset_and_properties() -> None:
    data = {**COMMAND, "channel": "webhook", "url": "https://example.com/hook"}
    del data["preset"], data["properties"]
    row = as_dict(rows.SEND_COMMANDS, rows.send_command_row(SendCommand(**data), ORIGIN))
    assert (row["preset"], row["url"], row["properties"]) == ("", "https://example.com/hook", "{}")


def test_journey_activity_row() -> None:
    activity = JourneyActivity.model_validate(ACTIVITY)
    row = as_dict(rows.JOURNEY_ACTIVITY, rows.journey_activity_row(activity, ORIGIN))
    assert row == {
        **ACTIVITY,
        "activity_id": activity.activity_id,
        "at": TS,
        "detail": "",
        "visit": 0,
        "cause": "",
        "source_partition": 3,
        "source_offset": 1234,
        **NO_DIMENSIONS,
        # A record of an earlier version: nothing says what made it.
        "trigger": "",
        "input_source": "",
        "input_offset": 0,
    }
    assert type(row["activity"]) is str


def test_journey_activity_row_with_its_trigger_and_input() -> None:
    caused = {**ACTIVITY, "trigger": "f:fb1", "source": "f", "offset": 77}
    activity = JourneyActivity.model_validate(caused)
    row = as_dict(rows.JOURNEY_ACTIVITY, rows.journey_activity_row(activity, ORIGIN))
    assert (row["trigger"], row["input_source"], row["input_offset"]) == ("f:fb1", "f", 77)
    assert row["activity_id"] == JourneyActivity.model_validate(ACTIVITY).activity_id


def test_membership_row_with_its_values_and_input() -> None:
    change = {
        "segment_id": "s",
        "user_id": "u1",
        "change": "entered",
        "at": "2024-05-01T10:00:00Z",
        "version": 1,
        "cause": "e:x",
        "values": [0, {"d": 1714521600000}, None, True],
        "source": "e",
        "offset": 9,
    }
    row = as_dict(rows.SEGMENT_MEMBERSHIPS, rows.membership_row(change, rows.Origin(1, 2)))
    assert orjson.loads(row["condition_values"]) == change["values"]
    assert (row["input_source"], row["input_offset"]) == ("e", 9)
    bare = {k: v for k, v in change.items() if k not in ("values", "source", "offset")}
    assert row["change_id"] == rows.membership_row(bare, rows.Origin(5, 6))[0]


def test_a_replayed_activity_gets_the_same_row_identity() -> None:
    first = rows.journey_activity_row(JourneyActivity.model_validate(ACTIVITY), ORIGIN)
    again = rows.journey_activity_row(JourneyActivity.model_validate(ACTIVITY), Origin(0, 9))
    assert first[0] == again[0]
    other = JourneyActivity.model_validate({**ACTIVITY, "detail": "cta"})
    assert rows.journey_activity_row(other, ORIGIN)[0] != first[0]


def _record(value: bytes) -> Any:
    """A consumed record as the projection agents see it (only its value is read)."""
    return SimpleNamespace(value=value)


def test_journey_records_become_rows_without_their_invalid_items(
    caplog: pytest.LogCaptureFixture,
) -> None:
    to_rows = item_rows("reach.journey-activity", JourneyActivity, rows.journey_activity_row)
    items = [ACTIVITY, {**ACTIVITY, "activity": "teleported"}, {**ACTIVITY, "step": "x"}]
    record = _record(orjson.dumps(items))
    found = to_rows(record, ORIGIN)
    assert [row[5] for row in found] == ["greet", "x"]
    assert "reach.journey-activity 3:1234[1] not projected" in caplog.text


@pytest.mark.parametrize(("value", "error"), [(b"{}", TypeError), (b"[", ValueError)])
def test_a_journey_record_that_is_not_an_array_raises(value: bytes, error: type[Exception]) -> None:
    to_rows = item_rows("reach.send-commands", SendCommand, rows.send_command_row)
    with pytest.raises(error):
        to_rows(_record(value), ORIGIN)
