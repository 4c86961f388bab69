"""Rendering a preset for a user: the variant of their language, placeholders filled
from tags (as the state stores them), entry properties and the user id; a missing
value without a default is a failure naming it, never an exception."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

import pytest

from delivery.render import RenderedContent, RenderFailure, choose, readable, render
from schemas.presets import EmailContent, PresetDefinition, SmsContent
from tests.unit.journey_sim import load_presets

SEED = {item.id: item for item in load_presets()}
UTC = ZoneInfo("UTC")


def make(channel: str, content: dict[str, Any], **extra: Any) -> PresetDefinition:
    return PresetDefinition.model_validate(
        {"id": "p", "name": "P", "channel": channel, "content": content, "version": 3, **extra}
    )


def rendered(result: RenderedContent | RenderFailure) -> Any:
    assert isinstance(result, RenderedContent), result
    return result.content


def sms(text: str, tags: dict[str, Any] | None = None, **properties: Any) -> str:
    content = rendered(render(make("sms", {"text": text}), tags or {}, properties, "u1"))
    assert isinstance(content, SmsContent)
    return content.text


# --- variants -----------------------------------------------------------------------

LANGUAGES = make(
    "sms",
    {"text": "base"},
    variants={"pt": {"text": "pt"}, "pt-BR": {"text": "pt-BR"}, "hi": {"text": "hi"}},
    default_language="en",
)


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("pt-BR", ("pt-BR", "pt-BR")),  # exact
        ("pt_br", ("pt-BR", "pt-BR")),  # case and underscore aside
        ("pt-PT", ("pt", "pt")),  # the prefix before '-'
        ("PT", ("pt", "pt")),
        ("hi-IN", ("hi", "hi")),
        ("fr", ("en", "base")),  # no variant: the base content, in its own language
        ("en-GB", ("en", "base")),
        (None, ("en", "base")),
        ("", ("en", "base")),
        (42, ("en", "base")),  # not a language at all
    ],
)
def test_the_variant_follows_the_language_tag(language: Any, expected: tuple[str, str]) -> None:
    key, content = choose(LANGUAGES, language)
    assert isinstance(content, SmsContent)
    assert (key, content.text) == expected
    tags = {} if language is None else {"Language": language}
    result = render(LANGUAGES, tags, {}, "u1")
    assert isinstance(result, RenderedContent)
    assert (result.language, result.preset_id, result.version) == (expected[0], "p", 3)


def test_seed_presets_in_hindi_and_portuguese() -> None:
    email = rendered(render(SEED["we-miss-you"], {"Language": "hi", "First Name": "Asha"}, {}, "u"))
    assert isinstance(email, EmailContent)
    assert email.subject == "Asha, हमें आपकी याद आती है"
    push = render(SEED["flight-changed-push"], {"Language": "pt-BR"}, {"flight": "TP 123"}, "u")
    assert isinstance(push, RenderedContent)
    assert (push.language, push.channel) == ("pt", "push")
    assert push.model_dump(mode="json")["content"]["title"] == "Voo alterado: TP 123"


# --- placeholders -------------------------------------------------------------------


def test_tags_properties_user_id_and_defaults() -> None:
    text = "Hi {{tag.First Name|there}}, {{property.plan}} for {{user_id}}{{property.x|}}."
    assert sms(text, {"First Name": "Ana"}, plan="Gold") == "Hi Ana, Gold for u1."
    assert sms(text, {}, plan="Gold") == "Hi there, Gold for u1."
    # Empty values read as missing: the default is better than nothing.
    assert sms(text, {"First Name": ""}, plan="Gold") == "Hi there, Gold for u1."
    no_user = render(make("sms", {"text": "{{user_id}}"}), {}, {}, "")
    assert isinstance(no_user, RenderFailure)
    assert no_user.missing == ("user_id",)
    assert rendered(render(make("sms", {"text": "{{user_id|anon}}"}), {}, {}, "")).text == "anon"


def test_properties_reach_into_nested_objects() -> None:
    text = "{{property.cart.total}} / {{property.a.b|none}} / {{property.cart.items}}"
    cart = {"total": 42, "items": ["hat", "scarf"]}
    assert sms(text, cart=cart, **{"a.b": "dotted"}) == "42 / dotted / hat, scarf"


def test_a_missing_value_without_default_is_a_failure_naming_it() -> None:
    preset = make(
        "email",
        {"subject": "Hi {{tag.First Name}}", "text": "{{property.plan}} {{tag.First Name}}",
         "sender": "a@example.com"},
    )  # fmt: skip
    result = render(preset, {"Language": "fr"}, {}, "u1")
    assert isinstance(result, RenderFailure)
    assert result.missing == ("tag.First Name", "property.plan")
    assert result.problems == (
        "subject: no value for {{tag.First Name}} and no default",
        "text: no value for {{property.plan}} and no default",
        "text: no value for {{tag.First Name}} and no default",
    )
    assert result.message.startswith("subject: no value for {{tag.First Name}}")
    assert (result.preset_id, result.version, result.language) == ("p", 3, None)


def test_stored_typed_values_read_as_people_read_them() -> None:
    tags = {
        "Last Purchase": {"d": 1_798_020_000_000},  # 2026-12-23 10:00 UTC
        "Birthday": {"d": 1_797_984_000_000},  # 2026-12-23 00:00 UTC
        "Balance": {"p": "9.99", "c": "EUR"},
        "Application Version": {"v": [2, 4, 1, 0]},
        "Major": {"v": [3, 0, 0, 0]},
        "Premium": True,
        "Score": 4.5,
        "Visits": 12.0,
        "Interests": ["ski", "sun"],
    }
    text = " | ".join(f"{{{{tag.{name}}}}}" for name in tags)
    assert sms(text, tags) == (
        "2026-12-23 10:00 | 2026-12-23 | 9.99 EUR | 2.4.1 | 3.0 | true | 4.5 | 12 | ski, sun"
    )


def test_dates_are_shown_in_the_users_zone() -> None:
    tags = {"Time zone": "Asia/Kolkata", "Flight": {"d": 1_798_020_000_000}}
    assert sms("{{tag.Flight}}", tags) == "2026-12-23 15:30"
    assert sms("{{tag.Flight}}", {**tags, "Time zone": "Not/AZone"}) == "2026-12-23 10:00"


def test_properties_in_the_contracts_typed_form() -> None:
    properties = {
        "ends": {"type": "date", "value": "2026-12-31T00:00:00Z"},
        "price": {"type": "price", "amount": "19.90", "currency": "USD"},
        "version": {"type": "version", "value": "1.2"},
        "other": {"a": 1},
    }
    text = "{{property.ends}} {{property.price}} {{property.version}} {{property.other}}"
    assert sms(text, **properties) == '2026-12-31 19.90 USD 1.2 {"a":1}'


@pytest.mark.parametrize(
    ("value", "shown"),
    [({"d": "soon"}, '{"d":"soon"}'), ({"d": 10**20}, '{"d":100000000000000000000}')],
)
def test_malformed_typed_values_fall_back_to_json(value: Any, shown: str) -> None:
    assert readable(value, UTC) == shown


def test_html_escapes_values_but_not_the_template() -> None:
    preset = make(
        "email",
        {"subject": "Hi {{tag.Name}}", "html": "<p>Hi {{tag.Name|<b>you</b>}}</p>",
         "text": "Hi {{tag.Name}}", "sender": "a@example.com"},
    )  # fmt: skip
    content = rendered(render(preset, {"Name": "<script>x</script>"}, {}, "u1"))
    assert isinstance(content, EmailContent)
    assert content.html == "<p>Hi &lt;script&gt;x&lt;/script&gt;</p>"
    assert content.text == content.subject == "Hi <script>x</script>"
    # The default is the preset author's own HTML: kept as written.
    html_only = make("email", {"subject": "Hi", "html": preset.content.html, "sender": "a@b.co"})
    assert rendered(render(html_only, {}, {}, "u1")).html == "<p>Hi <b>you</b></p>"


def test_a_users_value_may_hold_braces() -> None:
    assert sms("Hi {{tag.Name}}", {"Name": "{{not a placeholder}}"}) == "Hi {{not a placeholder}}"


def test_whatsapp_parameters_and_in_app_payloads_are_rendered() -> None:
    whatsapp = render(SEED["cart-whatsapp"], {"Language": "pt"}, {"value": 59}, "u1")
    assert isinstance(whatsapp, RenderedContent)
    dumped = whatsapp.model_dump(mode="json")["content"]
    assert (dumped["language"], dumped["parameters"]) == ("pt_PT", ["", "59"])
    in_app = make(
        "in_app",
        {"payload": {"title": "Hi {{tag.Name|you}}", "cards": [{"n": 1, "t": "{{user_id}}"}]}},
    )
    assert rendered(render(in_app, {}, {}, "u9")).payload == {
        "title": "Hi you",
        "cards": [{"n": 1, "t": "u9"}],
    }


def test_an_sms_longer_than_the_limit_once_rendered_fails() -> None:
    result = render(make("sms", {"text": "{{property.long}}"}), {}, {"long": "x" * 1601}, "u1")
    assert isinstance(result, RenderFailure)
    assert result.problems == ("text: 1601 characters once rendered, over the SMS limit of 1600",)
    assert result.missing == ()


def _linked(href: str) -> PresetDefinition:
    return make(
        "email",
        {"subject": "Hi", "html": f'<p><a class="x" href="{href}">Go</a></p>', "sender": "a@b.co"},
    )


@pytest.mark.parametrize(
    "site",
    [
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        "  javascript:alert(1)",
        "\x01javascript:alert(1)",
        "java\tscript:alert(1)",
        "java\nscript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox(1)",
        "file:///etc/passwd",
    ],
)
def test_links_from_values_must_be_web_mail_phone_or_relative(site: str) -> None:
    result = render(_linked("{{tag.Site}}"), {"Site": site}, {}, "u1")
    assert isinstance(result, RenderFailure), result
    assert "is not http, https, mailto, tel or relative" in result.message
    # Pieced together from two values, the same.
    halves = {"A": site[:4], "B": site[4:]}
    assert isinstance(render(_linked("{{tag.A}}{{tag.B}}"), halves, {}, "u1"), RenderFailure)


@pytest.mark.parametrize(
    "site",
    [
        "https://example.com/a?b=javascript:x",
        "HTTP://example.com",
        "mailto:someone@example.com",
        "tel:+351210000000",
        "/account",
        "#top",
        "page.html",
        "&#106;avascript:alert(1)",  # escaped into the page: read as text, a relative link
    ],
)
def test_web_mail_phone_and_relative_links_from_values_pass(site: str) -> None:
    content = rendered(render(_linked("{{tag.Site}}"), {"Site": site}, {}, "u1"))
    assert isinstance(content, EmailContent)
    assert content.html is not None
    assert "href=" in content.html
