"""Segment definitions as users write them: JSON or YAML, one or a list, each with a
``condition`` tree or an ``expression`` in the segmentation language."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from files.reading import DefinitionError, read
from schemas.segments import SegmentDefinition

__all__ = ["DefinitionError", "from_document", "from_item", "load"]


def from_document(document: Any) -> list[SegmentDefinition]:
    items = document if isinstance(document, list) else [document]
    return [from_item(item, index) for index, item in enumerate(items)]


def from_item(item: Any, index: int = 0) -> SegmentDefinition:
    if not isinstance(item, dict):
        raise DefinitionError(f"definition {index}: expected an object, got {type(item).__name__}")
    where = f"segment '{item.get('id', index)}'"
    if "expression" in item:
        from schemas.segment_language import SegmentSyntaxError, parse

        if "condition" in item:
            raise DefinitionError(f"{where}: give a condition or an expression, not both")
        try:
            rest = {key: value for key, value in item.items() if key != "expression"}
            item = {**rest, "condition": parse(str(item["expression"]))}
        except SegmentSyntaxError as error:
            raise DefinitionError(f"{where}: expression error\n{error}") from None
    try:
        return SegmentDefinition.model_validate(item)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc']) or '(definition)'}: {problem['msg']}"
            for problem in error.errors(include_url=False)[:5]
        )
        raise DefinitionError(f"{where}: {problems}") from None


def load(path: Path) -> list[SegmentDefinition]:
    return from_document(read(path))
