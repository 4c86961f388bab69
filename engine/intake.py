"""Pure intake logic: one input record -> valid models and dead letters."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from engine.codecs import InputCodec
from schemas import DeadLetter
from schemas.dead_letters import MAX_KEY_BYTES
from schemas.forget import FORGET_HEADER

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class Source:
    """Where a record was read from."""

    topic: str
    partition: int
    offset: int
    key: bytes | None


def is_forget(headers: Any) -> bool:
    """Whether a record's headers (pairs, or a mapping) mark it as a forget request."""
    if not headers:
        return False
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    try:
        return any(name == FORGET_HEADER for name, _ in pairs)
    except (TypeError, ValueError):  # not pairs: not ours
        return False


@dataclass(frozen=True, slots=True)
class Intake(Generic[M]):
    valid: list[M]
    dead: list[DeadLetter]


def intake(codec: InputCodec[M], raw: bytes | None, source: Source, now: datetime) -> Intake[M]:
    """Never raises: a record of any bytes (or none, a tombstone) gives valid items and
    dead letters, each item of the record in exactly one of them."""
    decoded = codec.decode(raw)
    key = None if source.key is None else source.key[:MAX_KEY_BYTES]
    dead = [
        DeadLetter(
            raw=rejected.raw,
            key=key,
            source_topic=source.topic,
            source_partition=source.partition,
            source_offset=source.offset,
            source_index=rejected.index,
            reason=rejected.reason,
            detail=rejected.detail,
            at=now,
            original_size=rejected.original_size,
            original_sha256=rejected.original_sha256,
        )
        for rejected in decoded.rejected
    ]
    return Intake(decoded.items, dead)
