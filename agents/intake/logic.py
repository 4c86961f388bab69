"""Pure intake logic: one input record -> valid models and dead letters."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from pydantic import BaseModel

from schemas import DeadLetter
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


def intake(codec: InputCodec[M], raw: bytes, source: Source, now: datetime) -> Intake[M]:
    decoded = codec.decode(raw)
    dead = [
        DeadLetter(
            raw=rejected.raw,
            key=source.key,
            source_topic=source.topic,
            source_partition=source.partition,
            source_offset=source.offset,
            source_index=rejected.index,
            reason=rejected.reason,
            detail=rejected.detail,
            at=now,
        )
        for rejected in decoded.rejected
    ]
    return Intake(decoded.items, dead)
