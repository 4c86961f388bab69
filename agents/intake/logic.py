"""Pure intake logic: one input record -> valid models and dead letters."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from pydantic import BaseModel

from schemas import DeadLetter
from schemas.dead_letters import MAX_KEY_BYTES
from streams.codecs import InputCodec

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class Source:
    """Where a record was read from."""

    topic: str
    partition: int
    offset: int
    key: bytes | None


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
