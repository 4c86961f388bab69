"""What the definition files (segments, presets, journeys) share: JSON or YAML, one
definition or a list, ids distinct within a file, and refusals that name the
definition and, through ``problems_of``, the place inside it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import orjson
import yaml
from pydantic import BaseModel, ValidationError

MAX_PROBLEMS = 5

M = TypeVar("M", bound=BaseModel)
Problems = Callable[[ValidationError, dict[str, Any]], list[str]]


class DefinitionError(ValueError):
    """A definition that cannot be read; the message points at the problem."""


def read(path: Path) -> Any:
    """The file's document as written (check it with ``from_document``, send it on)."""
    text = path.read_bytes()
    try:
        is_yaml = path.suffix in (".yaml", ".yml")
        document = yaml.safe_load(text) if is_yaml else orjson.loads(text)
    except (yaml.YAMLError, orjson.JSONDecodeError) as error:
        raise DefinitionError(f"{path}: not valid {path.suffix[1:] or 'JSON'}: {error}") from None
    return document


def distinct_items(document: Any, kind: str, model: type[M], problems_of: Problems) -> list[M]:
    """Every definition of the document, refused whole when one is invalid or when an id
    comes twice (two in one apply would get two versions, the second silently replacing
    the first)."""
    items = document if isinstance(document, list) else [document]
    found = [one_item(item, index, kind, model, problems_of) for index, item in enumerate(items)]
    seen: set[str] = set()
    for definition in found:
        identity = str(getattr(definition, "id"))  # noqa: B009 (every definition has one)
        if identity in seen:
            raise DefinitionError(f"{kind} '{identity}' is defined twice")
        seen.add(identity)
    return found


def one_item(item: Any, index: int, kind: str, model: type[M], problems_of: Problems) -> M:
    if not isinstance(item, dict):
        raise DefinitionError(f"{kind} {index}: expected an object, got {type(item).__name__}")
    where = f"{kind} '{item['id']}'" if isinstance(item.get("id"), str) else f"{kind} {index}"
    try:
        return model.model_validate(item)
    except ValidationError as error:
        problems = problems_of(error, item)
        more = len(problems) - MAX_PROBLEMS
        text = "; ".join(problems[:MAX_PROBLEMS]) + (f"; and {more} more" if more > 0 else "")
        raise DefinitionError(f"{where}: {text}") from None
