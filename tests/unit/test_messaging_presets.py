"""SMS segments, WhatsApp and in-app presets: checked when applied, shown and
enforced when rendered; and the channels served by the real adapters once configured."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from delivery.adapters import build
from delivery.inapp import InAppAdapter
from delivery.render import RenderedContent, RenderFailure, render
from delivery.simulator import SimulatedChannels
from delivery.sms import SmsAdapter
from delivery.whatsapp import WhatsAppAdapter
from schemas.presets import InAppContent, PresetDefinition, WhatsAppContent
from schemas.sms_text import segments_of, shape
from streams.settings import Settings
from tests.unit.test_preset_routes import READ, Api
from tests.unit.test_preset_routes import api as api


@pytest.mark.parametrize(
    ("text", "encoding", "segments"),
    [
        ("", "GSM-7", 0),
        ("a" * 160, "GSM-7", 1),
        ("a" * 161, "GSM-7", 2),
        ("a" * 306, "GSM-7", 2),
        ("a" * 307, "GSM-7", 3),
        ("€" * 80, "GSM-7", 1),  # the extension table: two septets each
        ("€" * 81, "GSM-7", 2),
        ("a" * 152 + "€" + "a" * 152, "GSM-7", 3),  # 306 septets, but € is not split
        ("Olá, você ganhou", "UCS-2", 1),  # á is not in GSM-7, but é is
        ("ж" * 70, "UCS-2", 1),
        ("ж" * 71, "UCS-2", 2),
        ("ж" * 134, "UCS-2", 2),
        ("ж" * 135, "UCS-2", 3),
        ("😀" * 35, "UCS-2", 1),  # two code units each
        ("😀" * 36, "UCS-2", 2),
        ("a" * 66 + "😀", "UCS-2", 1),
        ("a" * 67 + "😀" * 2, "UCS-2", 2),
    ],
)
def test_segments(text: str, encoding: str, segments: int) -> None:
    found = shape(text)
    assert (found.encoding, found.segments) == (encoding, segments)


def test_gsm_letters_with_accents_stay_gsm() -> None:
    assert shape("é è ù ì ò Ç Ø å Ä Ö Ñ Ü ß à ¿ ¡ £ ¥ §").encoding == "GSM-7"


def sms_preset(text: str, **content: Any) -> PresetDefinition:
    return PresetDefinition.model_validate(
        {"id": "s", "name": "S", "channel": "sms", "content": {"text": text, **content}}
    )


def test_a_text_over_its_segment_limit_is_refused_when_applied() -> None:
    with pytest.raises(ValidationError) as caught:
        sms_preset("ж" * 71 + " {{tag.Name}}", max_segments=1)
    assert "text: as written, 2 UCS-2 segments (72 characters), over the limit of 1 segments" in (
        str(caught.value)
    )
    sms_preset("Hi {{tag.Name}}", max_segments=1)  # the written text fits


def test_rendering_shows_the_segments_and_refuses_a_text_over_the_limit() -> None:
    preset = sms_preset("Hi {{tag.Name}}, your code is ready", max_segments=1)
    result = render(preset, {"Name": "Ana"}, {}, "u1")
    assert isinstance(result, RenderedContent)
    assert result.sms == segments_of("Hi Ana, your code is ready")
    assert result.model_dump(mode="json")["sms"] == {
        "encoding": "GSM-7",
        "characters": 26,
        "segments": 1,
    }
    too_long = render(preset, {"Name": "Анастасия " * 6}, {}, "u1")  # UCS-2, 2 segments
    assert isinstance(too_long, RenderFailure)
    assert too_long.message == (
        "text: once rendered, 2 UCS-2 segments (83 characters), over the limit of 1 segments"
    )


async def test_the_render_preview_shows_the_segments(api: Api) -> None:
    preset = {
        "id": "otp",
        "name": "OTP",
        "channel": "sms",
        "content": {"text": "Code {{property.code}}", "max_segments": 1},
    }
    status, _ = await api.call("POST", "/v1/presets", preset)
    assert status == 200
    body = {"properties": {"code": "123456"}}
    status, answer = await api.call("POST", "/v1/presets/otp/render", body, headers=READ)
    assert status == 200, answer
    assert answer["sms"] == {"encoding": "GSM-7", "characters": 11, "segments": 1}
    refused = {**preset, "id": "long", "content": {"text": "x" * 200, "max_segments": 1}}
    status, answer = await api.call("POST", "/v1/presets", refused)
    assert status == 400
    assert "over the limit of 1 segments" in answer["error"]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ({}, "a template (with its language) or a text"),
        ({"template": "t", "language": "en", "text": "x"}, "a template (with its language) or"),
        ({"template": "t"}, "needs its language"),
        ({"text": "Hi", "parameters": ["x"]}, "parameters belong to a template"),
    ],
)
def test_whatsapp_content_is_a_template_or_a_text(content: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        WhatsAppContent.model_validate(content)


def test_whatsapp_parameters_and_text_are_personalised_per_language() -> None:
    preset = PresetDefinition.model_validate(
        {
            "id": "w",
            "name": "W",
            "channel": "whatsapp",
            "content": {"template": "cart", "language": "en_US", "parameters": ["{{tag.Name}}"]},
            "variants": {
                "pt": {"template": "cart", "language": "pt_BR", "parameters": ["{{tag.Name}}"]}
            },
        }
    )
    result = render(preset, {"Name": "Ana", "Language": "pt-BR"}, {}, "u1")
    assert isinstance(result, RenderedContent)
    assert isinstance(result.content, WhatsAppContent)
    assert (result.content.language, result.content.parameters) == ("pt_BR", ("Ana",))


def test_an_in_app_layout_is_personalised_buttons_included() -> None:
    preset = PresetDefinition.model_validate(
        {
            "id": "i",
            "name": "I",
            "channel": "in_app",
            "content": {
                "title": "Hi {{tag.Name}}",
                "body": "{{property.offer|A gift}} for you",
                "buttons": [
                    {"label": "See {{property.offer|it}}", "link": "app://offers/{{user_id}}"},
                    {"label": "Later", "action": "dismiss"},
                ],
            },
        }
    )
    result = render(preset, {"Name": "Ana"}, {"offer": "10% off"}, "u7")
    assert isinstance(result, RenderedContent)
    content = result.content
    assert isinstance(content, InAppContent)
    assert (content.title, content.body) == ("Hi Ana", "10% off for you")
    assert [(button.label, button.link) for button in content.buttons] == [
        ("See 10% off", "app://offers/u7"),
        ("Later", None),
    ]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ({"image": "https://x.test/a.png"}, "needs a title, a body or a payload"),
        ({"title": "T", "buttons": [{"label": "Go"}]}, "a button that opens needs its link"),
        ({"title": "T", "buttons": [{"label": "{{tag.X", "action": "dismiss"}]}, "not closed"),
    ],
)
def test_in_app_layouts_are_checked(content: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        InAppContent.model_validate(content)


def test_configured_channels_are_served_by_the_providers(tmp_path: Any) -> None:
    simulated = build(Settings(data_dir=tmp_path))
    for channel in ("sms", "whatsapp", "in_app"):
        assert isinstance(simulated[channel], SimulatedChannels), channel
    configured = build(
        Settings(
            data_dir=tmp_path,
            twilio_account_sid="AC1",
            twilio_auth_token="t",
            twilio_from="+15005550006",
            whatsapp_phone_number_id="1",
            whatsapp_access_token="t",
            inapp=True,
        )
    )
    assert isinstance(configured["sms"], SmsAdapter)
    assert isinstance(configured["whatsapp"], WhatsAppAdapter)
    assert isinstance(configured["in_app"], InAppAdapter)
    assert isinstance(configured["push"], SimulatedChannels)
