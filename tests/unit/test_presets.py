"""Content presets: content per channel, variants, and placeholder syntax, refused at
submission with the field named."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from schemas.definitions import DEFINITION_EVENT, PresetApplied
from schemas.presets import (
    EmailContent,
    Placeholder,
    PlaceholderError,
    PresetDefinition,
    parse_template,
)
from tests.unit.journey_sim import load_presets

AT = "2026-12-01T00:00:00Z"
EMAIL: dict[str, Any] = {"subject": "Hi", "text": "Hello", "sender": "shop@example.com"}


def preset(channel: str, content: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"id": "p", "name": "P", "channel": channel, "content": content, **extra}


def problems(document: dict[str, Any]) -> list[tuple[tuple[Any, ...], str]]:
    with pytest.raises(ValidationError) as caught:
        PresetDefinition.model_validate(document)
    return [
        (tuple(error["loc"]), error["msg"].removeprefix("Value error, "))
        for error in caught.value.errors(include_url=False)
    ]


# --- placeholders -------------------------------------------------------------------


def test_placeholders_parse_with_defaults_and_spaces() -> None:
    parts = parse_template("Hi {{ tag.First Name | there }}, {{property.cart.total|}} {{user_id}}")
    assert parts == (
        "Hi ",
        Placeholder("tag", "First Name", "there"),
        ", ",
        Placeholder("property", "cart.total", ""),
        " ",
        Placeholder("user_id", "", None),
    )
    assert parse_template("no placeholders { } here") == ("no placeholders { } here",)
    assert parse_template("") == ()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("Hi {{tag.Name", "'{{' at character 4 is not closed with '}}'"),
        ("Hi {{tag.A {{tag.B}}", "'{{' at character 4 is not closed with '}}'"),
        ("Hi tag.Name}}", "'}}' at character 12 closes no placeholder"),
        ("{{tags.Name}}", "unknown placeholder {{tags.Name}}: use tag.<Name>, property.<name>"),
        ("{{Name}}", "unknown placeholder {{Name}}"),
        ("{{{tag.Name}}}", "unbalanced braces in {{{tag.Name}}"),
        ("{{tag.A|x}y}}", "unbalanced braces"),
        ("{{tag.}}", "{{tag.}} names no tag"),
        ("{{property.a b}}", "a property name is letters, digits"),
    ],
)
def test_bad_placeholders_are_refused(text: str, problem: str) -> None:
    with pytest.raises(PlaceholderError) as caught:
        parse_template(text)
    assert problem in str(caught.value)


def test_html_may_close_css_blocks_but_not_open_placeholders_badly() -> None:
    css = "<style>@media (max-width: 600px) { p { margin: 0 }}</style>{{tag.Name|x}}"
    content = EmailContent.model_validate({**EMAIL, "html": css})
    assert content.html == css
    with pytest.raises(ValidationError, match="closes no placeholder"):
        EmailContent.model_validate({**EMAIL, "text": "a }} b"})
    with pytest.raises(ValidationError, match="not closed"):
        EmailContent.model_validate({**EMAIL, "html": "<p>{{tag.Name</p>"})


@pytest.mark.parametrize(
    ("channel", "content", "where", "problem"),
    [
        ("sms", {"text": "Hi {{tag.Name"}, ("content", "sms", "text"), "not closed"),
        ("push", {"title": "{{foo}}", "body": "b"}, ("content", "push", "title"), "unknown"),
        (
            "whatsapp",
            {"template": "t", "language": "en", "parameters": ["ok", "{{x.y}}"]},
            ("content", "whatsapp", "parameters", 1),
            "unknown placeholder {{x.y}}",
        ),
        (
            "in_app",
            {"payload": {"cards": [{"title": "{{tag.A"}]}},
            ("content", "in_app"),
            "payload.cards.0.title: '{{' at character 1 is not closed",
        ),
        (
            "web_push",
            {"title": "t", "body": "b", "url": "ftp://x"},
            ("content", "web_push", "url"),
            "http(s)",
        ),
        (
            "push",
            {"title": "t", "body": "b", "deep_link": "no scheme"},
            ("content", "push", "deep_link"),
            "scheme",
        ),
        ("sms", {"text": "x" * 1601}, ("content", "sms", "text"), "at most 1600 characters"),
        ("email", {"subject": "s", "sender": "a@b.c"}, ("content", "email"), "needs a body"),
        ("email", {**EMAIL, "sender": "shop"}, ("content", "email", "sender"), "an email address"),
        ("email", {**EMAIL, "reply_to": "a@b"}, ("content", "email", "reply_to"), "email address"),
        (
            "whatsapp",
            {"template": "Bad Name", "language": "en"},
            ("content", "whatsapp", "template"),
            "pattern",
        ),
        ("in_app", {"payload": {}}, ("content", "in_app"), "needs a title, a body or a payload"),
    ],
)
def test_bad_content_is_refused_naming_the_field(
    channel: str, content: dict[str, Any], where: tuple[Any, ...], problem: str
) -> None:
    [(loc, message)] = problems(preset(channel, content))
    assert loc == where
    assert problem in message


@pytest.mark.parametrize(
    "sender", ["shop@example.com", "Reach Travel <hello@reach.example>", "a.b+c@mail.co.uk"]
)
def test_senders_are_checked_loosely(sender: str) -> None:
    EmailContent.model_validate({**EMAIL, "sender": sender})


def test_content_takes_the_presets_channel_and_round_trips() -> None:
    document = preset(
        "email",
        {**EMAIL, "html": "<p>Hi {{tag.First Name|there}}</p>"},
        variants={"pt-BR": {**EMAIL, "subject": "Olá"}, "hi": {**EMAIL, "subject": "नमस्ते"}},
        default_language="en",
    )
    parsed = PresetDefinition.model_validate(document)
    assert isinstance(parsed.content, EmailContent)
    assert parsed.variants["pt-BR"].channel == "email"
    event = PresetApplied(definition=parsed, at=AT)  # type: ignore[arg-type]
    assert DEFINITION_EVENT.validate_json(event.model_dump_json()) == event


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        (
            {"variants": {"pt": {"text": "y"}, "PT": {"text": "z"}}},
            "'pt' and 'PT' are one language",
        ),
        ({"variants": {"portuguese!": {"text": "y"}}}, "pattern"),
        ({"variants": {"pt": {"text": "{{x}}"}}}, "unknown placeholder"),
        ({"default_language": "pt", "variants": {"pt": {"text": "y"}}}, "cannot also be a variant"),
        ({"content": {"channel": "push", "title": "t", "body": "b"}}, "content is push content"),
        (
            {"variants": {"pt": {"channel": "push", "title": "t", "body": "b"}}},
            "variant 'pt' is push",
        ),
    ],
)
def test_variants_are_one_language_each_and_of_the_presets_channel(
    extra: dict[str, Any], problem: str
) -> None:
    found = problems({**preset("sms", {"text": "x"}), **extra})
    assert any(problem in message for _, message in found), found


def test_variant_errors_name_the_language() -> None:
    [(loc, _)] = problems(preset("sms", {"text": "x"}, variants={"hi": {"text": "{{tag.A"}}))
    assert loc == ("variants", "hi", "sms", "text")


def test_the_seed_presets_are_valid() -> None:
    presets = {item.id: item for item in load_presets()}
    assert len(presets) == 11
    assert {"pt", "hi"} <= {key for item in presets.values() for key in item.variants}
    assert presets["we-miss-you"].variants.keys() == {"hi", "pt"}


@pytest.mark.parametrize(
    "href",
    [
        "javascript:alert(1)",
        "&#106;avascript:alert(1)",  # entities are read as the browser reads them
        " JAVASCRIPT:alert(1)",
        "data:text/html,x",
        "vbscript:x",
        "sms:{{tag.Phone}}",  # the scheme is written, not from a value
    ],
)
def test_links_written_in_html_must_be_web_mail_phone_or_relative(href: str) -> None:
    html = f"<p><a href='{href}'>Go</a> <form action=/x></form></p>"
    with pytest.raises(ValidationError, match="is not http, https, mailto, tel or relative"):
        EmailContent.model_validate({**EMAIL, "html": html})


@pytest.mark.parametrize(
    "href",
    ["https://x.example/{{tag.Id}}", "mailto:{{tag.Email}}", "tel:{{tag.Phone}}", "{{tag.Site}}"],
)
def test_links_with_placeholders_are_checked_when_rendered(href: str) -> None:
    EmailContent.model_validate({**EMAIL, "html": f'<a href="{href}">Go</a>'})
