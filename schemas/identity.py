"""Deterministic identities: the same content always yields the same id.

Projections and consumers dedupe on these ids, so a replayed or re-sent record
rewrites a row instead of adding one.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from pydantic import BaseModel


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"cannot hash {type(value).__name__}")


def content_id(*parts: Any) -> str:
    """A 32-hex-digit id from the canonical JSON of ``parts``."""
    canonical = orjson.dumps(
        parts, default=_jsonable, option=orjson.OPT_SORT_KEYS | orjson.OPT_UTC_Z
    )
    return hashlib.blake2b(canonical, digest_size=16).hexdigest()
