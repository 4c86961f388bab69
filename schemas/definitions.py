"""Definition events: segments (and, later, presets and journeys) are created, changed
and deleted by records on the compacted definitions topic, keyed ``segment:<id>``.

Every worker folds the whole topic into a ``Definitions`` registry, so all of them
agree on the same versions; replaying the topic rebuilds the same registry.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, TypeAdapter

from schemas.segments import SegmentDefinition, SegmentId, reference_problems, references
from schemas.values import CONTRACT, Timestamp


class SegmentApplied(BaseModel):
    model_config = CONTRACT

    kind: Literal["segment_applied"] = "segment_applied"
    definition: SegmentDefinition
    at: Timestamp


class SegmentDeleted(BaseModel):
    model_config = CONTRACT

    kind: Literal["segment_deleted"] = "segment_deleted"
    segment_id: SegmentId
    version: int
    at: Timestamp


DefinitionEvent = Annotated[SegmentApplied | SegmentDeleted, Field(discriminator="kind")]
DEFINITION_EVENT: TypeAdapter[SegmentApplied | SegmentDeleted] = TypeAdapter(DefinitionEvent)


def record_key(event: SegmentApplied | SegmentDeleted) -> bytes:
    segment_id = event.definition.id if isinstance(event, SegmentApplied) else event.segment_id
    return f"segment:{segment_id}".encode()


class DefinitionRefused(ValueError):
    """A definition that cannot be applied; the message says what and where."""


class Definitions:
    """The registry of live segment definitions, folded from definition events."""

    def __init__(self) -> None:
        self.segments: dict[str, SegmentDefinition] = {}
        # Versions of deleted segments too, so a re-created segment gets a new one.
        self._versions: dict[str, int] = {}

    def fold(self, event: SegmentApplied | SegmentDeleted) -> None:
        if isinstance(event, SegmentApplied):
            definition = event.definition
            self.segments[definition.id] = definition
            self._versions[definition.id] = definition.version
        else:
            self.segments.pop(event.segment_id, None)
            self._versions[event.segment_id] = event.version

    def next_version(self, segment_id: str) -> int:
        return self._versions.get(segment_id, 0) + 1

    def prepare(self, definition: SegmentDefinition, at: datetime) -> SegmentApplied:
        """Check a new or changed definition against the others and give it its version."""
        candidate = {**self.segments, definition.id: definition}
        problems = reference_problems(candidate)
        if problems:
            raise DefinitionRefused("; ".join(problems))
        versioned = definition.model_copy(update={"version": self.next_version(definition.id)})
        return SegmentApplied(definition=versioned, at=at)

    def prepare_delete(self, segment_id: str, at: datetime) -> SegmentDeleted:
        if segment_id not in self.segments:
            raise DefinitionRefused(f"no segment '{segment_id}'")
        users = sorted(
            other.id
            for other in self.segments.values()
            if other.id != segment_id and segment_id in references(other.condition)
        )
        if users:
            raise DefinitionRefused(
                f"segment '{segment_id}' is referred to by {', '.join(users)}: change those first"
            )
        return SegmentDeleted(segment_id=segment_id, version=self.next_version(segment_id), at=at)
