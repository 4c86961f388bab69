"""Preset files: JSON or YAML, one or a list, with errors naming the preset and field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from files.presets import from_document, load
from files.segments import DefinitionError

EXAMPLES = Path(__file__).parents[2] / "examples"
SMS: dict[str, Any] = {"id": "hello", "name": "Hello", "channel": "sms", "content": {"text": "Hi"}}


def error(document: Any) -> str:
    with pytest.raises(DefinitionError) as caught:
        from_document(document)
    return str(caught.value)


def test_the_seed_file_loads() -> None:
    presets = load(EXAMPLES / "seed-presets.yaml")
    assert [preset.id for preset in presets][:2] == ["we-miss-you", "we-miss-you-reminder"]


def test_one_preset_or_a_list_and_json(tmp_path: Path) -> None:
    assert [preset.id for preset in from_document(SMS)] == ["hello"]
    assert len(from_document([SMS, {**SMS, "id": "bye"}])) == 2
    path = tmp_path / "presets.json"
    path.write_text('[{"id": "x", "name": "X", "channel": "sms", "content": {"text": "y"}}]')
    assert [preset.id for preset in load(path)] == ["x"]
    path.write_text("[{")
    with pytest.raises(DefinitionError, match="not valid json"):
        load(path)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (
            {**SMS, "content": {"text": "Hi {{tag.Name"}},
            "preset 'hello': content.text: '{{' at character 4 is not closed with '}}'",
        ),
        (
            {**SMS, "variants": {"pt": {"text": "Olá {{nome}}"}}},
            "preset 'hello': variants.pt.text: unknown placeholder {{nome}}: "
            "use tag.<Name>, property.<name> or user_id",
        ),
        (
            {**SMS, "channel": "fax"},
            "preset 'hello': channel: Input should be 'push', 'web_push', 'email', 'sms', "
            "'whatsapp' or 'in_app'",
        ),
        (
            {**SMS, "channel": "email"},
            "preset 'hello': content.subject: Field required",
        ),
        ({"name": "No id", "channel": "sms", "content": {"text": "x"}}, "preset 0: id: Field"),
        ([SMS, SMS], "preset 'hello' is defined twice"),
        (["hello"], "preset 0: expected an object, got str"),
    ],
)
def test_errors_name_the_preset_and_field(document: Any, message: str) -> None:
    assert error(document).startswith(message)
