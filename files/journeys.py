"""Journey definitions as users write them: JSON or YAML, one journey or a list.

Errors name the journey and, inside it, the node (by its id) or the entry the
problem is in, so that a long file can be fixed without counting list items.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from files.reading import DefinitionError, distinct_items, one_item, read
from schemas.journeys import JourneyDefinition

__all__ = ["DefinitionError", "from_document", "from_item", "load", "read"]


def from_document(document: Any) -> list[JourneyDefinition]:
    return distinct_items(document, "journey", JourneyDefinition, _problems)


def from_item(item: Any, index: int = 0) -> JourneyDefinition:
    return one_item(item, index, "journey", JourneyDefinition, _problems)


def _problems(error: ValidationError, item: dict[str, Any]) -> list[str]:
    found = error.errors(include_url=False)
    locations = [tuple(problem["loc"]) for problem in found]
    problems: list[str] = []
    for problem, loc in zip(found, locations, strict=True):
        # A list that fails its length check only because an item in it failed: the
        # item's own error says it.
        if problem["type"] == "too_short" and any(
            other[: len(loc)] == loc and len(other) > len(loc) for other in locations
        ):
            continue
        message = str(problem["msg"]).removeprefix("Value error, ")
        place = _place(loc, item)
        problems.append(f"{place}: {message}" if place else message)
    return problems


def _place(loc: Sequence[int | str], item: dict[str, Any]) -> str:
    """``('nodes', 1, 'message', 'channel')`` -> ``node 'second-email', channel``."""
    if len(loc) >= 2 and loc[0] in ("nodes", "entries") and isinstance(loc[1], int):
        listed = item.get(loc[0])
        raw = listed[loc[1]] if isinstance(listed, list) and loc[1] < len(listed) else None
        raw = raw if isinstance(raw, dict) else {}
        tag = raw.get("type" if loc[0] == "nodes" else "kind")
        rest = list(loc[2:])
        if rest and rest[0] == tag:
            rest = rest[1:]  # the discriminated union's branch: the step type, known
        if loc[0] == "nodes" and isinstance(raw.get("id"), str):
            head = f"node '{raw['id']}'"
        elif loc[0] == "nodes":
            head = f"node {loc[1]}"
        else:
            head = f"entry {loc[1]}" + (f" ({tag})" if isinstance(tag, str) else "")
        return head + (f", {'.'.join(str(part) for part in rest)}" if rest else "")
    return ".".join(str(part) for part in loc)


def load(path: Path) -> list[JourneyDefinition]:
    return from_document(read(path))
