"""How an SMS text travels: its encoding (GSM-7 when every character is in the GSM
03.38 alphabet, else UCS-2) and how many segments it takes.

One segment holds 160 GSM-7 septets or 70 UCS-2 code units; a text that needs more is
sent as concatenated segments of 153 septets or 67 code units (the rest of each is the
header that joins them). A character of the GSM extension table (``€ [ ] { } \\ ~ ^ |``
and form feed) takes two septets, and a character outside the Basic Multilingual Plane
(most emoji) two UCS-2 code units; neither is split across segments. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

from schemas.values import CONTRACT

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
"""The GSM 03.38 default alphabet (one septet each; ESC is the extension's prefix)."""
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")
"""The extension table: two septets each (ESC and the character)."""

Encoding = Literal["GSM-7", "UCS-2"]
SINGLE = {"GSM-7": 160, "UCS-2": 70}
CONCATENATED = {"GSM-7": 153, "UCS-2": 67}
MAX_SEGMENTS = 10
"""The most segments a preset may allow (``max_segments``): carriers reassemble more
unreliably beyond it."""


@dataclass(frozen=True, slots=True)
class SmsShape:
    encoding: Encoding
    characters: int
    units: int
    """Septets (GSM-7) or UTF-16 code units (UCS-2)."""
    segments: int

    def describe(self) -> str:
        plural = "" if self.segments == 1 else "s"
        return f"{self.segments} {self.encoding} segment{plural} ({self.characters} characters)"


def encoding(text: str) -> Encoding:
    return "GSM-7" if all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text) else "UCS-2"


def _cost(character: str, code: Encoding) -> int:
    if code == "GSM-7":
        return 2 if character in GSM7_EXTENSION else 1
    return 2 if ord(character) > 0xFFFF else 1


def shape(text: str) -> SmsShape:
    """The encoding, length and segment count of ``text``."""
    code = encoding(text)
    costs = [_cost(character, code) for character in text]
    units = sum(costs)
    if units <= SINGLE[code]:
        return SmsShape(code, len(text), units, 1 if text else 0)
    room = CONCATENATED[code]
    segments, used = 1, 0
    for cost in costs:
        if used + cost > room:  # a two-unit character is never split
            segments, used = segments + 1, 0
        used += cost
    return SmsShape(code, len(text), units, segments)


def over_limit(text: str, max_segments: int | None) -> str | None:
    """Why ``text`` is refused under ``max_segments``, or None."""
    if max_segments is None:
        return None
    found = shape(text)
    if found.segments <= max_segments:
        return None
    return f"{found.describe()}, over the limit of {max_segments} segments"


class SmsSegments(BaseModel):
    """How a rendered SMS text travels, as the render preview shows it."""

    model_config = CONTRACT

    encoding: Encoding
    characters: int
    segments: int


def segments_of(text: str) -> SmsSegments:
    found = shape(text)
    return SmsSegments(
        encoding=found.encoding, characters=found.characters, segments=found.segments
    )
