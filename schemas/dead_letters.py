"""Dead letters: records that could not be decoded or validated, kept with why.

On the dead-letter topic the record value is the original bytes, untouched, and the
rest travels in headers (the convention of Kafka Connect's error handling), so a
fixed consumer can re-read exactly what was sent.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from schemas.values import parse_timestamp


class DeadLetterReason(StrEnum):
    NOT_JSON = "not_json"
    TOMBSTONE = "tombstone"
    TOO_LARGE = "too_large"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    UNKNOWN_FIELD = "unknown_field"
    UNKNOWN_OPERATION = "unknown_operation"
    BAD_TIMESTAMP = "bad_timestamp"
    INVALID_VALUE = "invalid_value"
    TOO_MANY_DEVICES = "too_many_devices"
    """A device registration beyond ``schemas.devices.MAX_DEVICES`` live devices."""


HEADER_PREFIX = "reach.dlq."
MAX_KEY_BYTES = 1024
"""A dead letter keeps at most this much of its record's key (keys are user ids)."""


class DeadLetter(BaseModel):
    """A rejected record (or one item of a batch record) and where it came from."""

    model_config = ConfigDict(frozen=True)

    raw: bytes
    key: bytes | None
    source_topic: str
    source_partition: int
    source_offset: int
    # Position inside a batch record; None when the whole record was rejected.
    source_index: int | None
    reason: DeadLetterReason
    detail: str
    at: datetime
    # Set when ``raw`` is a prefix of the record (``too_large``): the whole's size and hash.
    original_size: int | None = None
    original_sha256: str | None = None

    def headers(self) -> list[tuple[str, bytes]]:
        fields = {
            "reason": self.reason.value,
            "detail": self.detail,
            "source.topic": self.source_topic,
            "source.partition": str(self.source_partition),
            "source.offset": str(self.source_offset),
            "source.index": "" if self.source_index is None else str(self.source_index),
            "at": self.at.isoformat(),
            "original.size": "" if self.original_size is None else str(self.original_size),
            "original.sha256": self.original_sha256 or "",
        }
        # "replace": a detail quoting text with a lone surrogate must still be sent.
        return [
            (HEADER_PREFIX + name, value.encode("utf-8", "replace"))
            for name, value in fields.items()
        ]

    @classmethod
    def from_record(
        cls, value: bytes, key: bytes | None, headers: list[tuple[str, bytes]]
    ) -> DeadLetter:
        found = {
            name[len(HEADER_PREFIX) :]: raw.decode("utf-8", "replace")
            for name, raw in headers
            if name.startswith(HEADER_PREFIX)
        }
        return cls(
            raw=value,
            key=key,
            source_topic=found["source.topic"],
            source_partition=int(found["source.partition"]),
            source_offset=int(found["source.offset"]),
            source_index=int(found["source.index"]) if found.get("source.index") else None,
            reason=DeadLetterReason(found["reason"]),
            detail=found["detail"],
            at=parse_timestamp(found["at"]),
            original_size=int(found["original.size"]) if found.get("original.size") else None,
            original_sha256=found.get("original.sha256") or None,
        )
