"""Content presets as users write them: JSON or YAML, one preset or a list.

Errors name the preset and the field (``content.subject``, ``variants.pt.text``), so a
placeholder typo in a long file is found without counting list items.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from files.reading import DefinitionError, distinct_items, one_item, read
from schemas.journey_nodes import Channel
from schemas.presets import PresetDefinition

__all__ = ["DefinitionError", "from_document", "from_item", "load", "read"]
_CHANNELS = frozenset(Channel)


def from_document(document: Any) -> list[PresetDefinition]:
    return distinct_items(document, "preset", PresetDefinition, _problems)


def from_item(item: Any, index: int = 0) -> PresetDefinition:
    return one_item(item, index, "preset", PresetDefinition, _problems)


def _problems(error: ValidationError, item: dict[str, Any]) -> list[str]:
    bad_channel = item.get("channel") not in _CHANNELS
    problems: list[str] = []
    for problem in error.errors(include_url=False):
        # With no valid channel, the content cannot be told apart: the channel's own
        # error says what to fix.
        if bad_channel and problem["type"].startswith("union_tag"):
            continue
        message = str(problem["msg"]).removeprefix("Value error, ")
        place = _place(problem["loc"])
        problems.append(f"{place}: {message}" if place else message)
    return problems


def _place(loc: Sequence[int | str]) -> str:
    """``('variants', 'pt', 'email', 'subject')`` -> ``variants.pt.subject``: the
    channel the content was read as is the preset's, known."""
    parts = list(loc)
    at = 1 if parts[:1] == ["content"] else 2 if parts[:1] == ["variants"] else None
    if at is not None and len(parts) > at and parts[at] in _CHANNELS:
        del parts[at]
    return ".".join(str(part) for part in parts)


def load(path: Path) -> list[PresetDefinition]:
    return from_document(read(path))
