"""Content presets: reusable message content for one channel, with language variants
and personalisation placeholders. See docs/presets.md.

Placeholders, in any text field: ``{{tag.Name}}``, ``{{tag.Name|default text}}``,
``{{property.name|default}}`` (an entry property; dots reach into nested objects) and
``{{user_id}}``. Their syntax is checked when a preset is read, so a typo is refused
at submission with the field named, not discovered at send time. Rendering is
``delivery.render``.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, Field, model_validator

from schemas.journey_nodes import Channel, PresetId
from schemas.sms_text import MAX_SEGMENTS, over_limit
from schemas.values import CONTRACT

# --- placeholders -------------------------------------------------------------------

Namespace = Literal["tag", "property", "user_id"]
_PROPERTY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
MAX_TAG_NAME = 128


class PlaceholderError(ValueError):
    """A template whose placeholders cannot be read; the message says where."""


@dataclass(frozen=True)
class Placeholder:
    namespace: Namespace
    name: str
    """The tag or property name; empty for ``user_id``."""
    default: str | None
    """The text after ``|`` (``""`` is a default too); None when there is none."""

    @property
    def reference(self) -> str:
        """``tag.Name``, ``property.name`` or ``user_id``, as the failures name it."""
        return self.namespace if self.namespace == "user_id" else f"{self.namespace}.{self.name}"


Part = str | Placeholder


def parse_template(text: str, stray_close: bool = False) -> tuple[Part, ...]:
    """Literal text and placeholders, in order. ``stray_close`` lets ``}}`` stand alone
    (HTML may close nested CSS blocks that way); ``{{`` always opens a placeholder."""
    parts: list[Part] = []
    position = 0
    while True:
        start = text.find("{{", position)
        close = text.find("}}", position)
        if not stray_close and close != -1 and (start == -1 or close < start):
            raise PlaceholderError(f"'}}}}' at character {close + 1} closes no placeholder")
        if start == -1:
            break
        end = text.find("}}", start + 2)
        following = text.find("{{", start + 2)
        if end == -1 or -1 < following < end:
            raise PlaceholderError(f"'{{{{' at character {start + 1} is not closed with '}}}}'")
        if start > position:
            parts.append(text[position:start])
        parts.append(_placeholder(text[start + 2 : end]))
        position = end + 2
    if position < len(text):
        parts.append(text[position:])
    return tuple(parts)


def _placeholder(inner: str) -> Placeholder:
    written = f"{{{{{inner}}}}}"
    reference, bar, default_text = inner.partition("|")
    reference = reference.strip()
    default = default_text.strip() if bar else None
    if "{" in inner or "}" in inner:
        raise PlaceholderError(f"unbalanced braces in {written}")
    if reference == "user_id":
        return Placeholder("user_id", "", default)
    namespace, dot, name = reference.partition(".")
    name = name.strip()
    if namespace not in ("tag", "property") or not dot:
        raise PlaceholderError(
            f"unknown placeholder {written}: use tag.<Name>, property.<name> or user_id"
        )
    if not name:
        raise PlaceholderError(f"{written} names no {namespace}")
    if namespace == "tag" and len(name) > MAX_TAG_NAME:
        raise PlaceholderError(f"{written}: a tag name has at most {MAX_TAG_NAME} characters")
    if namespace == "property" and not _PROPERTY.fullmatch(name):
        raise PlaceholderError(
            f"{written}: a property name is letters, digits, '_', '-' and '.' (for nesting)"
        )
    return Placeholder("tag" if namespace == "tag" else "property", name, default)


def _template(text: str) -> str:
    parse_template(text)
    return text


def _html_template(text: str) -> str:
    parse_template(text, stray_close=True)
    for value in _links(text):
        # Where the scheme is written out (not left to a placeholder), it is checked now;
        # the rest when rendered, with the user's values (see link_templates).
        written = value.split("{{", 1)[0]
        if (written == value or _SCHEME.match(_url_text(written))) and not link_allowed(written):
            raise ValueError(f"the link {_shown(value)} is not {LINK_KINDS}")
    return text


# --- links in HTML ------------------------------------------------------------------

LINK_SCHEMES = frozenset({"http", "https", "mailto", "tel"})
"""What a link in HTML content may lead to, besides relative links."""
LINK_KINDS = "http, https, mailto, tel or relative"
_LINK_ATTRIBUTES = frozenset({"href", "xlink:href", "action", "formaction"})
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_DROPPED = re.compile(r"[\t\n\r]")
"""Browsers drop tabs and line breaks anywhere in a URL: java<TAB>script: is javascript:."""
_C0_AND_SPACE = "".join(chr(code) for code in range(0x21))
"""Browsers strip these from both ends of a URL."""


def _url_text(url: str) -> str:
    return _DROPPED.sub("", url).strip(_C0_AND_SPACE)


def link_allowed(url: str) -> bool:
    """Whether ``url`` (as the browser reads it, entities decoded) is http, https,
    mailto, tel or relative: never javascript:, data:, vbscript: or the like."""
    scheme = _SCHEME.match(_url_text(url))
    return scheme is None or scheme.group(1).lower() in LINK_SCHEMES


def _shown(url: str) -> str:
    return repr(url if len(url) <= 60 else url[:57] + "...")


class _LinkScan(HTMLParser):
    """The values of link attributes (``href``, ``action``, ...), entities decoded."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.values: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.values += [value for name, value in attrs if name in _LINK_ATTRIBUTES and value]


@functools.lru_cache(maxsize=256)
def _links(html: str) -> tuple[str, ...]:
    scan = _LinkScan()
    scan.feed(html)
    scan.close()
    return tuple(scan.values)


def link_templates(html: str) -> tuple[str, ...]:
    """The link attribute values of ``html`` that hold placeholders, as the browser
    reads the text around them: once rendered, each must pass ``link_allowed``."""
    return tuple(value for value in _links(html) if "{{" in value)


Text = Annotated[str, AfterValidator(_template)]
"""Text that may hold placeholders."""
Html = Annotated[str, AfterValidator(_html_template)]
"""HTML that may hold placeholders (rendered values are escaped)."""

_LINK = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:\S")
_WEB = re.compile(r"^https?://\S")
# Loose on purpose: "a@b.c" or "Name <a@b.c>"; the email provider has the last word.
_MAILBOX = r"[^\s<>@]+@[^\s<>@]+\.[^\s<>@]+"
_ADDRESS = re.compile(rf"^(?:{_MAILBOX}|[^<>@]*<{_MAILBOX}>)$")


def _pattern(pattern: re.Pattern[str], what: str) -> AfterValidator:
    def check(value: str) -> str:
        if not pattern.match(value):
            raise ValueError(f"{what}, got {value!r}")
        return value

    return AfterValidator(check)


Link = Annotated[Text, Field(max_length=2048), _pattern(_LINK, "a link is scheme:...")]
WebUrl = Annotated[Text, Field(max_length=2048), _pattern(_WEB, "an http(s):// URL")]
EmailAddress = Annotated[
    str, Field(max_length=320), _pattern(_ADDRESS, 'an email address ("a@b.c" or "Name <a@b.c>")')
]
LanguageCode = Annotated[str, Field(pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}$")]
"""A language as users' ``Language`` tag holds it: ``pt``, ``hi``, ``pt-BR``."""


# --- content per channel ------------------------------------------------------------


class _Content(BaseModel):
    model_config = CONTRACT

    templates: ClassVar[tuple[str, ...]] = ()
    """Fields whose text is rendered; the others are sent as written."""
    escaped: ClassVar[frozenset[str]] = frozenset()
    """Fields whose rendered values are HTML-escaped."""


_RESERVED_DATA = ("aps", "from", "notification", "message_type", "google.", "gcm.")


def _custom_data(value: dict[str, str]) -> dict[str, str]:
    for key in value:
        if key.startswith(_RESERVED_DATA) or key in ("image", "deep_link"):
            raise ValueError(f"data key {key!r} is reserved by the push providers")
    return value


class PushContent(_Content):
    """A mobile push notification (APNs and FCM); delivery/push_payload.py builds each
    provider's payload from it and refuses one over the provider's size limit."""

    channel: Literal["push"] = "push"
    title: Text = Field(min_length=1, max_length=256)
    body: Text = Field(min_length=1, max_length=4096)
    deep_link: Link | None = None
    image: WebUrl | None = None
    badge: int | None = Field(default=None, ge=0, le=99_999)
    sound: str | None = Field(default=None, min_length=1, max_length=256)
    data: Annotated[
        dict[Annotated[str, Field(min_length=1, max_length=128)], Text],
        AfterValidator(_custom_data),
    ] = Field(default_factory=dict, max_length=50)
    """Custom key/values for the app (strings; placeholders rendered)."""
    collapse_id: str | None = Field(default=None, min_length=1, max_length=64)
    """Notifications with one collapse id replace each other on the device."""
    ttl_seconds: int | None = Field(default=None, ge=0, le=2_419_200)
    """How long the provider keeps trying an offline device (None: its default)."""
    priority: Literal["high", "normal"] = "high"

    templates = ("title", "body", "deep_link", "image", "data")


class WebPushAction(BaseModel):
    model_config = CONTRACT

    action: str = Field(min_length=1, max_length=64)
    title: str = Field(min_length=1, max_length=128)
    icon: WebUrl | None = None


class WebPushContent(_Content):
    channel: Literal["web_push"] = "web_push"
    title: Text = Field(min_length=1, max_length=256)
    body: Text = Field(min_length=1, max_length=4096)
    url: WebUrl | None = None
    icon: WebUrl | None = None
    image: WebUrl | None = None
    actions: tuple[WebPushAction, ...] = Field(default=(), max_length=2)
    """Buttons of the notification (browsers show at most two)."""
    ttl_seconds: int | None = Field(default=None, ge=0, le=2_419_200)
    urgency: Literal["very-low", "low", "normal", "high"] | None = None
    topic: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,32}$")
    """A message with the same topic replaces an undelivered one (RFC 8030)."""

    templates = ("title", "body", "url", "icon", "image")


class EmailContent(_Content):
    channel: Literal["email"] = "email"
    subject: Text = Field(min_length=1, max_length=998)
    html: Html | None = Field(default=None, max_length=500_000)
    text: Text | None = Field(default=None, max_length=100_000)
    sender: EmailAddress
    reply_to: EmailAddress | None = None

    templates = ("subject", "html", "text")
    escaped = frozenset({"html"})

    @model_validator(mode="after")
    def _a_body(self) -> EmailContent:
        if not self.html and not self.text:
            raise ValueError("an email needs a body: html, text or both")
        return self


SMS_LIMIT = 1600
"""Characters in an SMS text, as written and as rendered (about ten segments)."""


class SmsContent(_Content):
    channel: Literal["sms"] = "sms"
    text: Text = Field(min_length=1, max_length=SMS_LIMIT)
    max_segments: int | None = Field(default=None, ge=1, le=MAX_SEGMENTS)
    """Segments the rendered text may take (schemas/sms_text.py); None: no limit but
    ``SMS_LIMIT`` characters."""

    templates = ("text",)

    @model_validator(mode="after")
    def _within_segments(self) -> SmsContent:
        # The written text alone (placeholders left out) must fit already. (Also run
        # on rendered content, whose user values may hold braces: never refused here.)
        try:
            parts = parse_template(self.text)
        except PlaceholderError:
            return self
        written = "".join(part for part in parts if isinstance(part, str))
        refused = over_limit(written, self.max_segments)
        if refused is not None:
            raise ValueError(f"text: as written, {refused}")
        return self


class WhatsAppContent(_Content):
    """An approved WhatsApp template, by name and language, with its body parameters;
    or a free-form ``text``, which WhatsApp delivers only within 24 hours of the
    user's last message to the business (docs/messaging.md#whatsapp)."""

    channel: Literal["whatsapp"] = "whatsapp"
    template: str | None = Field(default=None, pattern=r"^[a-z0-9_]{1,512}$")
    language: str | None = Field(default=None, pattern=r"^[A-Za-z]{2,3}([_-][A-Za-z0-9]{2,8})?$")
    parameters: tuple[Annotated[Text, Field(max_length=1024)], ...] = Field(
        default=(), max_length=100
    )
    text: Text | None = Field(default=None, min_length=1, max_length=4096)

    templates = ("parameters", "text")

    @model_validator(mode="after")
    def _template_or_text(self) -> WhatsAppContent:
        if (self.template is None) == (self.text is None):
            raise ValueError("a WhatsApp message is a template (with its language) or a text")
        if self.template is not None and self.language is None:
            raise ValueError("a WhatsApp template needs its language (en_US, pt_BR, ...)")
        if self.text is not None and self.parameters:
            raise ValueError("parameters belong to a template; write them into the text")
        return self


class InAppButton(_Content):
    """A button of an in-app message: ``open`` a link (a deep link or a web page), or
    ``dismiss`` the message."""

    label: Text = Field(min_length=1, max_length=64)
    action: Literal["open", "dismiss"] = "open"
    link: Link | None = None

    templates = ("label", "link")

    @model_validator(mode="after")
    def _link_to_open(self) -> InAppButton:
        if self.action == "open" and self.link is None:
            raise ValueError("a button that opens needs its link")
        return self


class InAppContent(_Content):
    """An in-app message: a layout (title, body, image, buttons) and/or a JSON payload
    of the app's own; placeholders in its strings are rendered. Kept for the app until
    it is dismissed or ``expires_hours`` pass (docs/messaging.md#in-app)."""

    channel: Literal["in_app"] = "in_app"
    payload: dict[str, Any] = Field(default_factory=dict)
    title: Text | None = Field(default=None, max_length=256)
    body: Text | None = Field(default=None, max_length=4096)
    image: WebUrl | None = None
    buttons: tuple[InAppButton, ...] = Field(default=(), max_length=4)
    expires_hours: float | None = Field(default=None, gt=0, le=24 * 3660)
    """None: ``REACH_INAPP_DAYS``."""

    templates = ("payload", "title", "body", "image", "buttons")

    @model_validator(mode="after")
    def _placeholders(self) -> InAppContent:
        if not self.payload and not self.title and not self.body:
            raise ValueError("an in-app message needs a title, a body or a payload")
        for path, text in json_strings(self.payload):
            try:
                parse_template(text)
            except PlaceholderError as error:
                raise ValueError(f"payload.{path}: {error}") from None
        return self


Content = Annotated[
    PushContent | WebPushContent | EmailContent | SmsContent | WhatsAppContent | InAppContent,
    Field(discriminator="channel"),
]
ContentType = (
    PushContent | WebPushContent | EmailContent | SmsContent | WhatsAppContent | InAppContent
)


def json_strings(value: Any, path: str = "") -> list[tuple[str, str]]:
    """(dotted path, text) of every string inside a JSON value."""
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, dict):
        items: list[tuple[Any, Any]] = list(value.items())
    elif isinstance(value, list | tuple):
        items = list(enumerate(value))
    else:
        return []
    return [
        found
        for key, item in items
        for found in json_strings(item, f"{path}.{key}" if path else str(key))
    ]


# --- the preset ---------------------------------------------------------------------


class PresetDefinition(BaseModel):
    """Content for ``channel``; ``variants`` hold the same content in other languages
    (by the users' ``Language`` tag), ``default_language`` names the base content's.
    ``version`` is given by the registry when the preset is applied.

    The content's ``channel`` may be left out: it is the preset's."""

    model_config = CONTRACT

    id: PresetId
    name: str = Field(min_length=1, max_length=256)
    description: str = ""
    channel: Channel
    content: Content
    variants: dict[LanguageCode, Content] = Field(default_factory=dict, max_length=100)
    default_language: LanguageCode | None = None
    version: int = 0

    @model_validator(mode="before")
    @classmethod
    def _channel_into_content(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("channel") not in set(Channel):
            return data
        channel = str(data["channel"])

        def tagged(content: Any) -> Any:
            if isinstance(content, dict) and "channel" not in content:
                return {**content, "channel": channel}
            return content

        variants = data.get("variants")
        if isinstance(variants, dict):
            data = {**data, "variants": {key: tagged(item) for key, item in variants.items()}}
        return {**data, "content": tagged(data.get("content"))}

    @model_validator(mode="after")
    def _one_channel_one_language_each(self) -> PresetDefinition:
        contents = [("content", self.content)]
        contents += [(f"variant '{key}'", item) for key, item in self.variants.items()]
        for where, content in contents:
            if content.channel != self.channel:
                raise ValueError(
                    f"{where} is {content.channel} content, the preset's channel is {self.channel}"
                )
        seen: dict[str, str] = {}
        for key in self.variants:
            if key.lower() in seen:
                raise ValueError(f"variants '{seen[key.lower()]}' and '{key}' are one language")
            seen[key.lower()] = key
        if self.default_language and self.default_language.lower() in seen:
            raise ValueError(
                f"default_language '{self.default_language}' is the base content's language: "
                "it cannot also be a variant"
            )
        return self
