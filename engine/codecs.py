"""Decoding of input records: bytes -> validated contract models, or reasons why not.

An input record holds one JSON object, or a JSON array of objects (a batch packed by
the ingest path, all of one partition). Batches are validated in one call, and item
by item only when that fails, so one bad item costs its neighbours nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import from_json, to_json

from schemas.dead_letters import DeadLetterReason

M = TypeVar("M", bound=BaseModel)

_TYPE_ERRORS = ("_type", "_parsing", "model_attributes_type", "is_instance_of")

TOO_LARGE_PREFIX_BYTES = 16_384
"""How much of a record over the limit its dead letter keeps (at most the limit)."""


@dataclass(frozen=True, slots=True)
class Rejected:
    """One rejected record or batch item. ``index`` is None for a whole record."""

    index: int | None
    raw: bytes
    reason: DeadLetterReason
    detail: str
    # Set when ``raw`` is only a prefix of the record: its whole size and SHA-256.
    original_size: int | None = None
    original_sha256: str | None = None


@dataclass(slots=True)
class Decoded(Generic[M]):
    items: list[M] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


def classify(error: ValidationError) -> tuple[DeadLetterReason, str]:
    """A machine-readable reason and a readable detail for a validation error."""
    details = [
        item
        for item in error.errors(include_url=False, include_input=False)
        # Derived ids report "not computed" whenever another field failed: noise.
        if item["type"] != "default_factory_not_called"
    ] or error.errors(include_url=False, include_input=False)
    # In a union (a typed value) the deepest error is from the member that matched
    # furthest: the one that says what is actually wrong.
    details.sort(key=lambda item: -len(item["loc"]))
    first = details[0]
    kind, loc = first["type"], first["loc"]
    field_name = str(loc[0]) if loc else ""
    if kind == "json_invalid":
        reason = DeadLetterReason.NOT_JSON
    elif kind == "missing":
        reason = DeadLetterReason.MISSING_FIELD
    elif kind == "extra_forbidden":
        reason = DeadLetterReason.UNKNOWN_FIELD
    elif field_name == "timestamp" or (len(loc) > 1 and loc[-1] == "timestamp"):
        reason = DeadLetterReason.BAD_TIMESTAMP
    elif field_name == "op" and kind == "enum":
        reason = DeadLetterReason.UNKNOWN_OPERATION
    elif kind == "model_type" and not loc:
        reason = DeadLetterReason.NOT_AN_OBJECT
    elif any(str(part).startswith("tagged-union[") for part in loc[:-1]):
        # A typed value whose ``type`` matched but whose content is malformed.
        reason = DeadLetterReason.INVALID_VALUE
    elif kind.endswith(_TYPE_ERRORS):
        reason = DeadLetterReason.WRONG_TYPE
    else:
        reason = DeadLetterReason.INVALID_VALUE
    detail = "; ".join(
        f"{'.'.join(str(part) for part in item['loc']) or '(record)'}: {item['msg']}"
        for item in details[:5]
    )
    return reason, detail[:2000]


def _verdict(error: Exception) -> tuple[DeadLetterReason, str]:
    if isinstance(error, ValidationError):
        return classify(error)
    # Validation passed but a derived field could not be computed: still bad input.
    return DeadLetterReason.INVALID_VALUE, f"{type(error).__name__}: {error}"[:2000]


class InputCodec(Generic[M]):
    """Validates records of one input contract (events, tag updates or feedback)."""

    def __init__(self, model: type[M], max_record_bytes: int) -> None:
        self.model = model
        self.max_record_bytes = max_record_bytes
        self._one: TypeAdapter[M] = TypeAdapter(model)
        self._many: TypeAdapter[list[M]] = TypeAdapter(list[model])  # type: ignore[valid-type]

    def decode(self, raw: bytes | None) -> Decoded[M]:
        if raw is None:  # a tombstone: a key with no value
            detail = "record has no value (a tombstone)"
            return Decoded(rejected=[Rejected(None, b"", DeadLetterReason.TOMBSTONE, detail)])
        if len(raw) > self.max_record_bytes:
            return Decoded(rejected=[self._too_large(raw)])
        if raw[:1] == b"[" or raw.lstrip()[:1] == b"[":
            return self._decode_batch(raw)
        try:
            return Decoded(items=[self._one.validate_json(raw)])
        except Exception as error:  # bad input must never stop the stream
            reason, detail = _verdict(error)
            return Decoded(rejected=[Rejected(None, raw, reason, detail)])

    def _too_large(self, raw: bytes) -> Rejected:
        """Only a prefix goes along, with the size and hash of the whole: a dead letter
        that copied the record would be over the producer's request size too."""
        kept = min(TOO_LARGE_PREFIX_BYTES, self.max_record_bytes)
        digest = hashlib.sha256(raw).hexdigest()
        detail = (
            f"record is {len(raw)} bytes, over the limit of {self.max_record_bytes}; "
            f"the dead letter keeps its first {kept} bytes (sha256 of the whole: {digest})"
        )
        return Rejected(None, raw[:kept], DeadLetterReason.TOO_LARGE, detail, len(raw), digest)

    def _decode_batch(self, raw: bytes) -> Decoded[M]:
        try:
            return Decoded(items=self._many.validate_json(raw))
        except Exception:  # find out which items are at fault below
            pass
        try:
            # pydantic-core's parser, unlike orjson, keeps integers beyond 64 bits as
            # integers, so they are refused here as they are on the fast path.
            parsed = from_json(raw)
        except ValueError as error:
            return Decoded(rejected=[Rejected(None, raw, DeadLetterReason.NOT_JSON, str(error))])
        return self.validate_items(parsed)

    def validate_items(self, items: list[Any]) -> Decoded[M]:
        """Validate already-parsed items one by one, keeping each verdict."""
        decoded: Decoded[M] = Decoded()
        for index, item in enumerate(items):
            try:
                decoded.items.append(self._one.validate_python(item))
            except Exception as error:  # bad input must never stop the stream
                reason, detail = _verdict(error)
                decoded.rejected.append(Rejected(index, to_json(item), reason, detail))
        return decoded
