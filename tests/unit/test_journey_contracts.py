"""Journey definitions: what is refused at submission and why, and the lifecycle."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from schemas.commands import command_id, parse_command_id
from schemas.definitions import (
    DEFINITION_EVENT,
    DefinitionRefused,
    Definitions,
    JourneyAction,
    JourneyStatus,
    record_key,
)
from schemas.identity import content_id
from schemas.journeys import JourneyDefinition, Schedule
from tests.unit.journey_sim import load_journeys, load_presets, preset, segment

AT = datetime(2026, 12, 1, tzinfo=UTC)


def definition(nodes: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "id": "j",
        "name": "J",
        "entries": [{"kind": "api"}],
        "start": nodes[0]["id"],
        "nodes": nodes,
        **extra,
    }


def refused(document: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        JourneyDefinition.model_validate(document)
    return str(caught.value)


EXIT: dict[str, Any] = {"id": "done", "type": "exit"}


def test_the_seed_examples_are_valid_and_round_trip() -> None:
    journeys = load_journeys("examples/seed-journeys.yaml")
    assert len(journeys) == 6
    for journey in journeys:
        assert JourneyDefinition.model_validate_json(journey.model_dump_json()) == journey


def test_an_unconnected_output_is_refused_naming_node_and_output() -> None:
    message = refused(
        definition(
            [
                {
                    "id": "m",
                    "type": "message",
                    "channel": "email",
                    "preset": "p",
                    "split_after": {"amount": 5, "unit": "days"},
                    "next": {"opened": "done"},
                },
                EXIT,
            ]
        )
    )
    assert "node 'm': output 'not_opened' is not connected" in message


def test_unknown_targets_outputs_and_start_are_refused() -> None:
    assert "leads to unknown node 'nowhere'" in refused(
        definition(
            [
                {
                    "id": "d",
                    "type": "delay",
                    "duration": {"amount": 1, "unit": "hours"},
                    "next": {"next": "nowhere"},
                }
            ]
        )
    )
    assert "no output 'yes' on a delay step" in refused(
        definition(
            [
                {
                    "id": "d",
                    "type": "delay",
                    "duration": {"amount": 1, "unit": "hours"},
                    "next": {"next": "done", "yes": "done"},
                },
                EXIT,
            ]
        )
    )
    assert "start node 'x' is not among the nodes" in refused({**definition([EXIT]), "start": "x"})


def test_unreachable_nodes_and_duplicates_are_refused() -> None:
    assert "node 'lost' cannot be reached" in refused(
        definition([EXIT, {"id": "lost", "type": "exit"}])
    )
    assert "node 'done' is defined twice" in refused(definition([EXIT, EXIT]))


def test_a_loop_without_a_wait_is_refused_and_with_one_accepted() -> None:
    spin: list[dict[str, Any]] = [
        {"id": "a", "type": "segment_split", "segment": "s", "next": {"in": "b", "not_in": "done"}},
        {"id": "b", "type": "update_profile", "tags": {"x": 1}, "next": {"next": "a"}},
        EXIT,
    ]
    assert "a loop with no waiting step: a -> b -> a" in refused(definition(spin))
    waits: list[dict[str, Any]] = [
        {"id": "a", "type": "segment_split", "segment": "s", "next": {"in": "w", "not_in": "done"}},
        {
            "id": "w",
            "type": "delay",
            "duration": {"amount": 1, "unit": "days"},
            "next": {"next": "a"},
        },
        EXIT,
    ]
    JourneyDefinition.model_validate(definition(waits))


@pytest.mark.parametrize(
    ("node", "problem"),
    [
        ({"type": "message", "channel": "fax", "preset": "p"}, "channel"),
        (
            {
                "type": "ab_split",
                "variants": [{"name": "a", "percent": 50}, {"name": "b", "percent": 40}],
            },
            "add up to 90",
        ),
        ({"type": "delay"}, "needs a duration"),
        ({"type": "delay", "until": "25:00"}, "HH:MM"),
        ({"type": "delay", "until": "09:00", "timezone": "Mars/Olympus"}, "unknown time zone"),
        (
            {
                "type": "wait_for_event",
                "branches": [{"name": "timeout", "events": [{"event": "x"}]}],
                "timeout": {"amount": 1, "unit": "days"},
            },
            "not 'timeout'",
        ),
        ({"type": "webhook", "url": "ftp://x"}, "url"),
    ],
)
def test_bad_steps_are_refused(node: dict[str, Any], problem: str) -> None:
    assert problem in refused(definition([{"id": "n", "next": {}, **node}]))


@pytest.mark.parametrize(
    ("schedule", "problem"),
    [
        ({"kind": "once", "at": "09:00"}, "needs a date"),
        ({"kind": "recurring"}, "time of day"),
        ({"kind": "recurring", "at": "17:00", "unit": "weeks"}, "at least one weekday"),
        ({"kind": "recurring", "at": "17:00", "weekdays": ["fri"]}, "weekdays need unit 'weeks'"),
        ({"kind": "now", "timezone": "user"}, "user's time zone"),
    ],
)
def test_bad_schedules_are_refused(schedule: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        Schedule.model_validate(schedule)


def test_times_of_day_serialise_as_hh_mm() -> None:
    schedule = Schedule.model_validate({"kind": "once", "date": "2026-12-10", "at": "09:00"})
    assert schedule.model_dump(mode="json")["at"] == "09:00"


def seeded(*segments: str) -> Definitions:
    """A registry with the seed's presets (and ``segments``), as journeys need them first."""
    registry = Definitions()
    for seed_preset in load_presets():
        registry.fold(registry.prepare_preset(seed_preset, AT))
    for segment_id in segments:
        registry.fold(registry.prepare(segment(segment_id), AT))
    return registry


def test_unknown_segments_are_refused_when_applied() -> None:
    registry = seeded()
    journey = load_journeys("examples/seed-journeys.yaml")[0]
    with pytest.raises(DefinitionRefused, match="unknown segment 'inactive-7d'"):
        registry.prepare_journey(journey, AT)


def test_the_seed_presets_cover_the_seed_journeys() -> None:
    registry = seeded("inactive-7d", "lapsed-portuguese")
    for journey in load_journeys("examples/seed-journeys.yaml"):
        registry.fold(registry.prepare_journey(journey, AT))
    used = {p for journey in registry.journeys.values() for p in journey.latest.presets}
    assert used == set(registry.presets)


def test_unknown_presets_are_refused_naming_journey_node_and_preset() -> None:
    registry = Definitions()
    registry.fold(registry.prepare(segment("inactive-7d"), AT))
    journey = load_journeys("examples/seed-journeys.yaml")[0]
    with pytest.raises(DefinitionRefused) as caught:
        registry.prepare_journey(journey, AT)
    assert str(caught.value) == (
        "journey 'reengage-once' uses unknown preset 'we-miss-you' (node 'first-email'); "
        "journey 'reengage-once' uses unknown preset 'we-miss-you-reminder' (node 'second-email')"
    )


def test_a_preset_of_another_channel_is_refused_naming_both_channels() -> None:
    registry = seeded()
    journey = definition(
        [
            {"id": "text", "type": "message", "channel": "sms", "preset": "offer-email",
             "next": {"next": "done"}},
            EXIT,
        ]
    )  # fmt: skip
    with pytest.raises(DefinitionRefused) as caught:
        registry.prepare_journey(JourneyDefinition.model_validate(journey), AT)
    assert str(caught.value) == (
        "journey 'j': node 'text' sends on sms but preset 'offer-email' is for email"
    )


def test_presets_are_versioned_and_deleted_only_when_no_journey_uses_them() -> None:
    registry = seeded("inactive-7d")
    assert registry.presets["we-miss-you"].version == 1
    journey = load_journeys("examples/seed-journeys.yaml")[0]
    registry.fold(registry.prepare_journey(journey, AT))
    changed = registry.prepare_preset(
        registry.presets["we-miss-you"].model_copy(update={"name": "Miss you"}), AT
    )
    assert (changed.definition.version, record_key(changed)) == (2, b"preset:we-miss-you")
    registry.fold(DEFINITION_EVENT.validate_json(changed.model_dump_json()))
    assert registry.presets["we-miss-you"].name == "Miss you"
    # A draft journey may still be launched: it counts as a user.
    with pytest.raises(DefinitionRefused) as caught:
        registry.prepare_preset_delete("we-miss-you", AT)
    assert str(caught.value) == (
        "preset 'we-miss-you' is used by journey reengage-once: change or stop those first"
    )
    with pytest.raises(DefinitionRefused, match="sent on email by journey reengage-once"):
        registry.prepare_preset(preset("we-miss-you", "sms"), AT)
    with pytest.raises(DefinitionRefused, match="no preset 'nope'"):
        registry.prepare_preset_delete("nope", AT)

    for action in (JourneyAction.LAUNCH, JourneyAction.STOP):
        registry.fold(registry.prepare_action(journey.id, action, AT))
    deleted = registry.prepare_preset_delete("we-miss-you", AT)
    assert (deleted.version, record_key(deleted)) == (3, b"preset:we-miss-you")
    registry.fold(DEFINITION_EVENT.validate_json(deleted.model_dump_json()))
    assert "we-miss-you" not in registry.presets
    # The stopped journey cannot be launched again without its preset.
    with pytest.raises(DefinitionRefused, match="unknown preset 'we-miss-you'"):
        registry.prepare_action(journey.id, JourneyAction.LAUNCH, AT)
    # Re-created, it takes the next version, not 1 again.
    recreated = registry.prepare_preset(preset("we-miss-you"), AT)
    assert recreated.definition.version == 4
    registry.fold(recreated)
    registry.prepare_action(journey.id, JourneyAction.LAUNCH, AT)


def test_lifecycle_versions_and_refusals() -> None:
    registry = seeded("inactive-7d")
    journey = load_journeys("examples/seed-journeys.yaml")[0]
    applied = registry.prepare_journey(journey, AT)
    assert applied.definition.version == 1
    registry.fold(applied)
    with pytest.raises(DefinitionRefused, match="is draft: it cannot pause"):
        registry.prepare_action(journey.id, JourneyAction.PAUSE, AT)
    for action, status in [
        (JourneyAction.LAUNCH, JourneyStatus.LAUNCHED),
        (JourneyAction.PAUSE, JourneyStatus.PAUSED),
        (JourneyAction.RESUME, JourneyStatus.LAUNCHED),
        (JourneyAction.STOP, JourneyStatus.STOPPED),
        (JourneyAction.LAUNCH, JourneyStatus.LAUNCHED),
    ]:
        event = registry.prepare_action(journey.id, action, AT)
        assert event.status is status
        # Through the topic's encoding, as every worker folds it.
        registry.fold(DEFINITION_EVENT.validate_json(event.model_dump_json()))
    changed = registry.journeys[journey.id].status
    assert changed is not None
    assert changed.launch == 2
    renamed = registry.prepare_action(journey.id, JourneyAction.RENAME, AT, "Come back!")
    registry.fold(renamed)
    assert registry.journeys[journey.id].name == "Come back!"
    assert registry.journeys[journey.id].state is JourneyStatus.LAUNCHED
    second = registry.prepare_journey(journey, AT)
    registry.fold(second)
    assert sorted(registry.journeys[journey.id].versions) == [1, 2]
    assert record_key(second) == b"journey:reengage-once:2"
    assert record_key(renamed) == b"journey-status:reengage-once"
    with pytest.raises(DefinitionRefused, match="journey reengage-once"):
        registry.prepare_delete("inactive-7d", AT)
    with pytest.raises(DefinitionRefused, match="no journey 'nope'"):
        registry.prepare_action("nope", JourneyAction.LAUNCH, AT)


def test_command_ids_parse_back_to_their_step() -> None:
    identity = command_id("reengage-once", 3, "1-20261210T0900", "u:1", "first-email", 2)
    ref = parse_command_id(identity)
    assert ref is not None
    assert tuple(ref) == ("reengage-once", 3, "1-20261210T0900", "first-email", 2)
    assert identity != command_id("reengage-once", 3, "1-20261210T0900", "u:2", "first-email", 2)
    assert parse_command_id("an-external-id") is None


def test_command_ids_never_change_for_the_same_step_visit() -> None:
    # Ids of commands already sent must come out the same after an upgrade, or a replay
    # across it would send again: the digest is content_id's over the same parts.
    parts = ("reengage-once", 3, "1-20261210T0900", "u:1", "first-email", 2)
    digest = content_id("send", *parts)[:16]
    assert command_id(*parts) == f"reengage-once:3:1-20261210T0900:first-email:2:{digest}"
    assert digest == "6da1b66752f26abe"


def test_the_name_is_the_latest_of_a_rename_and_an_applied_version() -> None:
    registry = seeded("inactive-7d")
    journey = load_journeys("examples/seed-journeys.yaml")[0]
    registry.fold(registry.prepare_journey(journey, AT))
    registry.fold(registry.prepare_action(journey.id, JourneyAction.LAUNCH, AT))
    assert registry.journeys[journey.id].name == "Come back (once)"
    registry.fold(registry.prepare_action(journey.id, JourneyAction.RENAME, AT, "Renamed"))
    registry.fold(registry.prepare_action(journey.id, JourneyAction.PAUSE, AT))
    assert registry.journeys[journey.id].name == "Renamed"
    changed = journey.model_copy(update={"name": "Applied again"})
    registry.fold(registry.prepare_journey(changed, AT))
    assert registry.journeys[journey.id].name == "Applied again"
    registry.fold(registry.prepare_action(journey.id, JourneyAction.RESUME, AT))
    assert registry.journeys[journey.id].name == "Applied again"
