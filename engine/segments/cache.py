"""Compiled forms of definitions' parts, built once per object."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
_COMPILED: dict[tuple[str, int], tuple[object, Any]] = {}


def cached(kind: str, item: object, build: Callable[[], T]) -> T:
    """``build()``, once per (kind, object); the object is kept so its id stays its own."""
    found = _COMPILED.get((kind, id(item)))
    if found is not None and found[0] is item:
        result: T = found[1]
        return result
    if len(_COMPILED) > 50_000:  # definitions come and go; the cache must not grow with them
        _COMPILED.clear()
    built = build()
    _COMPILED[(kind, id(item))] = (item, built)
    return built
