"""User profiles: the engine's profile records (engine.profiles, emitted by the
processor when a user's tags or opt-outs change) and their rows (projections.profiles)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from engine import profiles
from engine.journeys.mover import Mover
from engine.journeys.state import JourneyState
from engine.journeys.types import Facts
from engine.testing import T0, Harness
from projections.addresses import PREFIX, AddressMask
from projections.profiles import CHANNELS, USER_PROFILE_CHANGES, USER_PROFILES, profile_rows
from projections.rows import Origin
from schemas.feedback import Feedback, FeedbackStatus
from schemas.tags import TagUpdate


def _json(record: dict[str, object]) -> dict[str, object]:
    """A record as the projection reads it from the topic (instants as text)."""
    import orjson

    loaded: dict[str, object] = orjson.loads(orjson.dumps(record, option=orjson.OPT_UTC_Z))
    return loaded


def test_a_tag_update_emits_the_profile_with_what_changed() -> None:
    engine = Harness()
    engine.tags("u1", Country="PT", Plan="free")
    engine.tags("u1", Country="PT", Plan="premium")  # Country as it was
    first, second = engine.profiles
    assert first["user_id"] == "u1"
    assert first["tags"] == {"Country": "PT", "Plan": "free"}
    assert sorted(first["changed"]) == ["Country", "Plan"]  # type: ignore[type-var]
    assert second["changed"] == ["Plan"]
    assert second["version"] > first["version"]  # type: ignore[operator]
    assert second["cause"].startswith("t:")  # type: ignore[attr-defined]
    assert second["at"] == T0


def test_increment_append_remove_and_unset_follow_the_state() -> None:
    engine = Harness()
    engine.tags("u1", op="increment", Sessions=2)
    engine.tags("u1", op="increment", Sessions=3)
    engine.tags("u1", op="append", Unsubscribed=["email", "sms"])
    engine.tags("u1", op="remove", Unsubscribed="sms")
    engine.tags("u1", op="unset", Sessions=0)
    tags = [record["tags"] for record in engine.profiles]
    assert tags[1] == {"Sessions": 5}
    assert tags[3] == {"Sessions": 5, "Unsubscribed": ["email"]}
    assert engine.profiles[-1]["removed"] == ["Sessions"]
    assert engine.profiles[-1]["changed"] == []


def test_events_fill_default_tags_and_an_unchanged_profile_emits_nothing() -> None:
    engine = Harness()
    engine.event("u1", "ApplicationOpen", country="FR", app_version="2.1")
    (record,) = engine.profiles
    assert sorted(record["changed"]) == [  # type: ignore[type-var]
        "Application Version",
        "Country",
        "First Install",
        "Last Application Open",
    ]
    engine.event("u1", "ScreenOpen", country="FR")  # nothing new
    assert len(engine.profiles) == 1
    engine.now += timedelta(hours=1)
    engine.event("u1", "ApplicationOpen")
    assert engine.profiles[-1]["changed"] == ["Last Application Open"]


def test_an_unsubscription_through_a_message_changes_the_profile() -> None:
    engine = Harness()
    engine.tags("u1", Email="a@example.com")
    feedback = Feedback(
        command_id="external-1",
        user_id="u1",
        status=FeedbackStatus.UNSUBSCRIBED,
        timestamp=T0,
        channel="email",
    )
    engine.send(feedback)
    record = engine.profiles[-1]
    assert record["changed"] == []
    assert record["opted_out"] == ["email"]
    row, changes = profile_rows(_json(record), Origin(0, 1))
    assert changes == []
    columns = dict(zip(USER_PROFILES.columns, row, strict=True))
    assert columns["opted_out_email"] is True
    assert columns["reachable_email"] is False
    engine.send(feedback.model_copy(update={"feedback_id": "again"}))  # known already
    assert len(engine.profiles) == 2


def test_a_replay_gives_the_same_records() -> None:
    def run() -> list[dict[str, object]]:
        engine = Harness()
        engine.tags("u1", Country="PT")
        engine.event("u1", "ApplicationOpen", language="pt")
        engine.tags("u1", op="increment", Sessions=1)
        return engine.profiles

    assert run() == run()


def test_reachability_is_the_journeys_rule() -> None:
    tags = {"Email": "a@example.com", "Unsubscribed": ["push"], "Phone": ""}
    state = JourneyState({}, {}, {}, [], [])
    state.opted_out = ["sms"]
    mover = Mover(None, state, Facts("u1", tags, {}))  # type: ignore[arg-type]
    record = _json(
        {
            "user_id": "u1",
            "at": T0,
            "cause": "t:1",
            "version": 3,
            "tags": tags,
            "changed": ["Email"],
            "opted_out": ["sms"],
        }
    )
    row, _ = profile_rows(record, Origin(0, 1))
    columns = dict(zip(USER_PROFILES.columns, row, strict=True))
    for channel in CHANNELS:
        assert columns[f"reachable_{channel}"] is mover.reachable(channel), channel
    assert {c for c in CHANNELS if columns[f"opted_out_{c}"]} == {"sms", "push"}


def test_rows_type_the_default_tags_render_the_rest_and_hash_pii() -> None:
    engine = Harness()
    engine.event("u1", "ApplicationOpen", country="PT", language="pt", app_version="2.1")
    engine.send(
        TagUpdate.model_validate(
            {
                "user_id": "u1",
                "tags": {
                    "Time zone": "Europe/Lisbon",
                    "Birthday": {"type": "date", "value": "1990-05-01T00:00:00Z"},
                    "Last Purchase": {"type": "price", "amount": "50.99", "currency": "EUR"},
                    "Min Version": {"type": "version", "value": "1.2"},
                    "Interests": ["golf", "wine"],
                    "VIP": True,
                    "Score": 7.5,
                    "Email": "a@example.com",
                    "Loyalty Card": "1234",
                },
                "timestamp": T0,
            }
        )
    )
    mask = AddressMask(b"key", ["Loyalty Card"])
    row, changes = profile_rows(_json(engine.profiles[-1]), Origin(2, 9), mask)
    columns = dict(zip(USER_PROFILES.columns, row, strict=True))
    assert (columns["country"], columns["language"], columns["timezone"]) == (
        "PT",
        "pt",
        "Europe/Lisbon",
    )
    assert columns["first_install"] == columns["last_application_open"] == T0
    assert columns["application_version"] == "2.1.0.0"
    assert columns["tags"] == {
        "Birthday": "1990-05-01T00:00:00.000Z",
        "Last Purchase": "50.99 EUR",
        "Min Version": "1.2.0.0",
        "Interests": '["golf","wine"]',
        "VIP": "true",
        "Score": "7.5",
    }
    assert set(columns["pii"]) == {"Email", "Loyalty Card"}
    assert all(value.startswith(PREFIX) for value in columns["pii"].values())
    assert columns["reachable_email"] is True
    assert columns["reachable_sms"] is False
    assert columns["reachable_in_app"] is True
    by_tag = {c[1]: dict(zip(USER_PROFILE_CHANGES.columns, c, strict=True)) for c in changes}
    assert set(by_tag) == {
        "Time zone",
        "Birthday",
        "Last Purchase",
        "Min Version",
        "Interests",
        "VIP",
        "Score",
        "Email",
        "Loyalty Card",
    }
    assert by_tag["Last Purchase"]["number"] == 50.99
    assert by_tag["Score"]["number"] == 7.5
    assert by_tag["VIP"]["number"] is None
    assert by_tag["Email"]["value"].startswith(PREFIX)
    assert by_tag["Email"]["number"] is None
    assert by_tag["Birthday"]["at"] == T0
    assert {c["version"] for c in by_tag.values()} == {columns["version"]}


@pytest.mark.parametrize(
    ("value", "text", "number"),
    [
        ("PT", "PT", None),
        (3, "3", 3.0),
        (2.5, "2.5", 2.5),
        (False, "false", None),
        ({"d": 0}, "1970-01-01T00:00:00.000Z", None),
        ({"p": "19.90", "c": "EUR"}, "19.90 EUR", 19.9),
        ({"v": [1, 2, 3, 0]}, "1.2.3.0", None),
        (["a", 1], '["a",1]', None),
    ],
)
def test_values_render_consistently(value: object, text: str, number: float | None) -> None:
    assert profiles.text(value) == text
    assert profiles.number(value) == number


def test_profile_instants_are_utc() -> None:
    assert profiles.instant({"d": 1_000}) == datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)
    assert profiles.instant("x") is None


def test_a_registered_device_makes_the_profile_reachable_and_an_opt_out_not() -> None:
    # Reachability in the profile follows the device registry (engine.devices), as the
    # journeys' steps do: a device or consent change alone emits the profile.
    from schemas.devices import DeviceUpdate

    engine = Harness()
    engine.tags("u1", Country="PT")
    device = {"kind": "push", "platform": "ios", "token": "t1", "app_id": "com.example"}
    engine.send(DeviceUpdate.model_validate({"user_id": "u1", "device": device, "timestamp": T0}))
    row, _ = profile_rows(_json(engine.profiles[-1]), Origin(0, 2))
    columns = dict(zip(USER_PROFILES.columns, row, strict=True))
    assert columns["reachable_push"] is True
    assert columns["opted_out_push"] is False
    opt_out = {"user_id": "u1", "op": "opt_out", "channel": "push", "timestamp": T0}
    engine.send(DeviceUpdate.model_validate(opt_out))
    row, _ = profile_rows(_json(engine.profiles[-1]), Origin(0, 3))
    columns = dict(zip(USER_PROFILES.columns, row, strict=True))
    assert columns["reachable_push"] is False
    assert columns["opted_out_push"] is True
    assert len(engine.profiles) == 3
