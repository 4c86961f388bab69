"""Journey definition files: JSON or YAML, one or a list, errors that say where."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from files.journeys import from_document, load
from files.segments import DefinitionError

EXAMPLES = Path(__file__).parents[2] / "examples"
SEED: list[dict[str, Any]] = yaml.safe_load((EXAMPLES / "seed-journeys.yaml").read_text())


def seed(journey_id: str) -> dict[str, Any]:
    return copy.deepcopy(next(item for item in SEED if item["id"] == journey_id))


def refusal(document: Any) -> str:
    with pytest.raises(DefinitionError) as raised:
        from_document(document)
    return str(raised.value)


def test_the_seed_file_loads() -> None:
    journeys = load(EXAMPLES / "seed-journeys.yaml")
    assert [journey.id for journey in journeys] == [item["id"] for item in SEED]
    assert all(journey.version == 0 for journey in journeys)


def test_one_journey_in_json(tmp_path: Path) -> None:
    path = tmp_path / "one.json"
    path.write_bytes(orjson.dumps(seed("follow-up-email-sms-whatsapp")))
    [journey] = load(path)
    assert journey.id == "follow-up-email-sms-whatsapp"
    assert journey.entries[0].kind == "api"


@pytest.mark.parametrize(("name", "text"), [("bad.yaml", "a: [1, 2"), ("bad.json", "{")])
def test_unreadable_files_name_the_file(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(DefinitionError, match=f"{name}: not valid {path.suffix[1:]}"):
        load(path)


def test_errors_name_the_node_by_id() -> None:
    item = seed("reengage-once")
    item["nodes"][1]["channel"] = "fax"
    item["nodes"][0]["split_after"] = {"amount": 0, "unit": "days"}
    message = refusal(item)
    assert message.startswith("journey 'reengage-once': ")
    assert "node 'first-email', split_after.amount: " in message
    assert "node 'second-email', channel: Input should be 'push'" in message


def test_errors_name_the_entry_and_its_kind() -> None:
    item = seed("reengage-once")
    item["entries"][0]["schedule"]["at"] = "25:00"
    message = refusal(item)
    assert "entry 0 (audience), schedule.at: a time of day is HH:MM" in message
    # Not also "entries: at least 1 item": the failing item says it.
    assert "at least 1" not in message


def test_an_unknown_step_type_names_the_node() -> None:
    item = seed("follow-up-push-email")
    item["nodes"][1]["type"] = "carrier-pigeon"
    assert "node 'email': Input tag 'carrier-pigeon'" in refusal([item])


def test_graph_problems_come_as_written() -> None:
    item = seed("reengage-once")
    item["nodes"][0]["next"] = {"opened": "done"}
    assert refusal(item) == (
        "journey 'reengage-once': node 'first-email': output 'not_opened' is not connected"
    )


def test_settings_problems_keep_their_path() -> None:
    item = {**seed("reengage-weekly"), "settings": {"timezone": "Mars/Olympus"}}
    assert "settings.timezone: unknown time zone 'Mars/Olympus'" in refusal(item)


def test_a_journey_without_id_is_named_by_position() -> None:
    message = refusal([seed("reengage-once"), {"name": "no id"}])
    assert message.startswith("journey 1: ")
    assert "id: Field required" in message


def test_many_problems_are_cut_short() -> None:
    item = seed("follow-up-email-sms-whatsapp")
    for node in item["nodes"][:-1]:
        node["channel"] = "fax"
        node["preset"] = "Not A Preset!"
    message = refusal(item)
    assert message.count("node '") == 5
    assert message.endswith("; and 1 more")


def test_the_same_journey_twice_is_refused() -> None:
    item = seed("reengage-once")
    assert refusal([item, item]) == "journey 'reengage-once' is defined twice"


def test_items_must_be_objects() -> None:
    assert refusal([seed("reengage-once"), "reengage"]) == "journey 1: expected an object, got str"
