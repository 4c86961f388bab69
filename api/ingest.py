"""What the ingest routes read from a body: a JSON array, ``{"items": [...]}`` or
NDJSON, each item validated with the same codec the worker decodes records with, and
the answer's errors by item (and by line, for NDJSON). Pure: runs in a thread."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from pydantic_core import from_json

from engine.codecs import InputCodec
from schemas import DeadLetterReason


@dataclass(frozen=True, slots=True)
class _Items:
    items: list[Any]
    """The items in order; None where an NDJSON line is not JSON."""
    lines: list[int] | None
    """NDJSON: the line (from 1) each item is on."""
    unreadable: dict[int, str]
    """Index -> why that NDJSON line is not JSON."""


def _parse_items(body: bytes, content_type: str) -> _Items:
    """A JSON array, ``{"items": [...]}``, or NDJSON (one object per line, each line
    read on its own so that one bad line costs the others nothing)."""
    # pydantic-core's parser keeps integers beyond 64 bits exact (orjson rounds them to
    # floats), so validation refuses them instead of accepting a rounded number.
    if content_type == "application/x-ndjson":
        items: list[Any] = []
        lines: list[int] = []
        unreadable: dict[int, str] = {}
        for number, line in enumerate(body.split(b"\n"), start=1):
            if not line.strip():
                continue  # blank lines are no items
            try:
                items.append(from_json(line))
            except ValueError as error:
                unreadable[len(items)] = f"not JSON: {error}"
                items.append(None)
            lines.append(number)
        return _Items(items, lines, unreadable)
    try:
        parsed = from_json(body)
    except ValueError as error:
        raise ValueError(f"body is not JSON: {error}") from None
    if isinstance(parsed, dict):
        parsed = parsed.get("items", [parsed])
    if not isinstance(parsed, list):
        raise ValueError("body must be a JSON array of objects")
    return _Items(parsed, None, {})


def check_items(
    body: bytes, content_type: str, codec: InputCodec[Any], max_items: int, max_record_bytes: int
) -> tuple[list[tuple[str, bytes]], list[dict[str, Any]]] | str:
    """(user id and encoded item of each valid item, errors by item) or why the whole
    body is refused. The errors of an NDJSON body also name the line of the item."""
    try:
        parsed = _parse_items(body, content_type)
    except ValueError as error:
        return str(error)
    items = parsed.items
    if len(items) > max_items:
        return f"batch has {len(items)} items, over the limit of {max_items}"
    errors: list[dict[str, Any]] = [
        {"index": index, "reason": DeadLetterReason.NOT_JSON.value, "detail": detail}
        for index, detail in parsed.unreadable.items()
    ]
    readable = [index for index in range(len(items)) if index not in parsed.unreadable]
    decoded = codec.validate_items([items[index] for index in readable])
    errors += [
        {
            "index": readable[rejected.index],
            "reason": rejected.reason.value,
            "detail": rejected.detail,
        }
        for rejected in decoded.rejected
        if rejected.index is not None
    ]
    refused = {problem["index"] for problem in errors}
    encoded: list[tuple[str, bytes]] = []
    for index in readable:
        if index in refused:
            continue
        item = items[index]
        raw = orjson.dumps(item)
        if len(raw) > max_record_bytes:
            detail = f"item is {len(raw)} bytes, over the limit of {max_record_bytes}"
            errors.append({"index": index, "reason": "too_large", "detail": detail})
        else:
            encoded.append((str(item["user_id"]), raw))
    errors.sort(key=lambda problem: problem["index"])
    if parsed.lines is not None:
        for problem in errors:
            problem["line"] = parsed.lines[problem["index"]]
    return encoded, errors
