"""A preset rendered for one user: the variant of their language, placeholders filled
from their tags, the entry's properties and their id.

Pure: no clock, no I/O. A value that is missing and has no default makes a
``RenderFailure`` naming the placeholder and the field, never an exception: a
delivery worker records it and goes on, the preview endpoint shows it.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field, ValidationError

from delivery.push_payload import size_problems
from engine.journeys.schedule import user_zone
from engine.time import from_ms
from schemas.journey_nodes import Channel
from schemas.presets import (
    LINK_KINDS,
    SMS_LIMIT,
    Content,
    ContentType,
    EmailContent,
    Placeholder,
    PresetDefinition,
    PushContent,
    SmsContent,
    WebPushContent,
    link_allowed,
    link_templates,
    parse_template,
)
from schemas.sms_text import SmsSegments, over_limit, segments_of
from schemas.values import CONTRACT, parse_timestamp

LANGUAGE_TAG = "Language"
"""The tag holding a user's language (``pt``, ``pt-BR``, ``hi``)."""


class RenderedContent(BaseModel):
    model_config = CONTRACT

    preset_id: str
    version: int
    channel: Channel
    language: str | None
    """The variant's language; for the base content, the preset's ``default_language``."""
    content: Content
    sms: SmsSegments | None = Field(default=None, exclude_if=lambda value: value is None)
    """For SMS: the rendered text's encoding and segment count."""


class RenderFailure(BaseModel):
    model_config = CONTRACT

    preset_id: str
    version: int
    language: str | None
    missing: tuple[str, ...]
    """Placeholders with no value and no default: ``tag.First Name``, ``property.plan``."""
    problems: tuple[str, ...]
    """One line each, naming the field."""

    @property
    def message(self) -> str:
        return "; ".join(self.problems)


def choose(preset: PresetDefinition, language: Any) -> tuple[str | None, ContentType]:
    """The variant for ``language``: exact (case and ``_``/``-`` aside), then its
    prefix before ``-`` (``pt-BR`` -> ``pt``), else the base content."""
    base = (preset.default_language, preset.content)
    if not isinstance(language, str) or not language.strip():
        return base
    wanted = language.strip().replace("_", "-").lower()
    keys = {key.lower(): key for key in preset.variants}
    own = (preset.default_language or "").lower()
    for candidate in (wanted, wanted.split("-")[0]):
        if candidate == own:
            return base
        if candidate in keys:
            key = keys[candidate]
            return key, preset.variants[key]
    return base


def render(
    preset: PresetDefinition,
    tags: Mapping[str, Any],
    properties: Mapping[str, Any],
    user_id: str,
) -> RenderedContent | RenderFailure:
    language, content = choose(preset, tags.get(LANGUAGE_TAG))
    filler = _Filler(tags, properties, user_id, user_zone(tags, "UTC"))
    update: dict[str, Any] = {}
    for name in content.templates:
        value = getattr(content, name)
        if value is not None:
            update[name] = filler.fill(value, name, escape=name in content.escaped)
    if isinstance(content, EmailContent) and content.html:
        _check_links(content.html, tags, properties, user_id, filler)
    if isinstance(content, SmsContent) and len(update["text"]) > SMS_LIMIT:
        length = len(update["text"])
        filler.problems.append(
            f"text: {length} characters once rendered, over the SMS limit of {SMS_LIMIT}"
        )
    if isinstance(content, SmsContent) and not filler.problems:
        refused = over_limit(update["text"], content.max_segments)
        if refused is not None:
            filler.problems.append(f"text: once rendered, {refused}")
    if isinstance(content, PushContent | WebPushContent) and not filler.problems:
        filler.problems += size_problems(content.model_copy(update=update))
    if filler.problems:
        return RenderFailure(
            preset_id=preset.id,
            version=preset.version,
            language=language,
            missing=tuple(dict.fromkeys(filler.missing)),
            problems=tuple(filler.problems),
        )
    # Not validated again: a user's value may well contain "{{".
    return RenderedContent(
        preset_id=preset.id,
        version=preset.version,
        channel=preset.channel,
        language=language,
        content=content.model_copy(update=update),
        sms=segments_of(update["text"]) if isinstance(content, SmsContent) else None,
    )


def _check_links(
    html: str, tags: Mapping[str, Any], properties: Mapping[str, Any], user_id: str, filler: _Filler
) -> None:
    """A link whose target comes from a value (``href="{{tag.Site}}"``) must be http,
    https, mailto, tel or relative once filled in: a user's value must never make a
    ``javascript:`` (or ``data:``, ``vbscript:``) link."""
    for template in link_templates(html):
        probe = _Filler(tags, properties, user_id, filler.zone)
        link = probe.fill(template, "html")  # as the browser reads it: unescaped
        if not probe.problems and not link_allowed(link):
            shown = link if len(link) <= 60 else link[:57] + "..."
            filler.problems.append(f"html: the link {shown!r} is not {LINK_KINDS}")


class _Filler:
    def __init__(
        self, tags: Mapping[str, Any], properties: Mapping[str, Any], user_id: str, zone: ZoneInfo
    ) -> None:
        self._tags = tags
        self._properties = properties
        self._user_id = user_id
        self.zone = zone
        self.missing: list[str] = []
        self.problems: list[str] = []

    def fill(self, value: Any, path: str, escape: bool = False) -> Any:
        """Strings rendered; lists and objects (an in-app payload) walked."""
        if isinstance(value, str):
            return self._text(value, path, escape)
        if isinstance(value, list | tuple):
            return type(value)(self.fill(item, f"{path}.{n}") for n, item in enumerate(value))
        if isinstance(value, dict):
            return {key: self.fill(item, f"{path}.{key}") for key, item in value.items()}
        if isinstance(value, BaseModel):  # an in-app button: its own template fields
            names = getattr(value, "templates", ())
            filled = {name: self.fill(getattr(value, name), f"{path}.{name}") for name in names}
            return value.model_copy(update=filled)
        return value

    def _text(self, text: str, path: str, escape: bool) -> str:
        pieces: list[str] = []
        for part in parse_template(text, stray_close=escape):
            if isinstance(part, str):
                pieces.append(part)
                continue
            found = self._value(part)
            if found is not None:
                shown = readable(found, self.zone)
                pieces.append(html.escape(shown) if escape else shown)
            elif part.default is not None:
                pieces.append(part.default)
            else:
                self.missing.append(part.reference)
                self.problems.append(
                    f"{path}: no value for {{{{{part.reference}}}}} and no default"
                )
        return "".join(pieces)

    def _value(self, placeholder: Placeholder) -> Any:
        if placeholder.namespace == "user_id":
            value: Any = self._user_id
        elif placeholder.namespace == "tag":
            value = self._tags.get(placeholder.name)
        else:
            value = _property(self._properties, placeholder.name)
        # An empty value reads as missing: the default is better than nothing.
        return None if value in ("", [], {}) else value


def _property(properties: Mapping[str, Any], name: str) -> Any:
    """``name`` itself, else a path into nested objects (``cart.total``)."""
    if name in properties:
        return properties[name]
    value: Any = properties
    for key in name.split("."):
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


def readable(value: Any, zone: ZoneInfo) -> str:
    """A stored or written value as a person reads it: dates in the user's zone
    (``2026-12-10 09:00``, or the day alone at midnight), ``9.99 EUR``, ``2.4.1``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if isinstance(value, int | str):
        return str(value)
    if isinstance(value, list | tuple):
        return ", ".join(readable(item, zone) for item in value)
    if isinstance(value, Mapping):
        typed = _typed(value, zone)
        if typed is not None:
            return typed
    return json.dumps(value, default=str, ensure_ascii=False, separators=(",", ":"))


def _typed(value: Mapping[str, Any], zone: ZoneInfo) -> str | None:
    """The state's forms (``{"d": ms}``, ``{"p", "c"}``, ``{"v": [...]}``) and the
    contracts' (``{"type": "date", ...}``); None for any other object."""
    try:
        if set(value) == {"d"}:
            return _date(from_ms(value["d"]).astimezone(zone))
        if set(value) == {"p", "c"}:
            return f"{value['p']} {value['c']}"
        if set(value) == {"v"} and isinstance(value["v"], list):
            return _version([int(part) for part in value["v"]])
        kind = value.get("type")
        if kind == "date":
            return _date(parse_timestamp(value["value"]).astimezone(zone))
        if kind == "price":
            return f"{value['amount']} {value['currency']}"
        if kind == "version":
            return str(value["value"])
    except (KeyError, TypeError, ValueError, OverflowError, ValidationError):
        return None
    return None


def _date(moment: datetime) -> str:
    return moment.strftime(
        "%Y-%m-%d" if (moment.hour, moment.minute) == (0, 0) else "%Y-%m-%d %H:%M"
    )


def _version(parts: list[int]) -> str:
    """``[2, 4, 1, 0]`` -> ``2.4.1``; ``[2, 0, 0, 0]`` -> ``2.0``."""
    while len(parts) > 2 and parts[-1] == 0:
        parts = parts[:-1]
    return ".".join(str(part) for part in parts)
