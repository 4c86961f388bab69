"""Definition events: segments, content presets and journeys are created, changed and
deleted by records on the compacted definitions topic. Keys: ``segment:<id>``;
``preset:<id>``; ``journey:<id>:<version>`` (every version is kept: users inside a
journey stay on the version they entered); ``journey-status:<id>`` (the whole
lifecycle state, so the latest record alone says it).

Every worker folds the whole topic into a ``Definitions`` registry, so all of them
agree on the same versions; replaying the topic rebuilds the same registry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, Field, TypeAdapter

from schemas.journey_nodes import MessageNode, PresetId
from schemas.journeys import JourneyDefinition, JourneyId
from schemas.presets import PresetDefinition
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


class PresetApplied(BaseModel):
    model_config = CONTRACT

    kind: Literal["preset_applied"] = "preset_applied"
    definition: PresetDefinition
    at: Timestamp


class PresetDeleted(BaseModel):
    model_config = CONTRACT

    kind: Literal["preset_deleted"] = "preset_deleted"
    preset_id: PresetId
    version: int
    at: Timestamp


class JourneyApplied(BaseModel):
    model_config = CONTRACT

    kind: Literal["journey_applied"] = "journey_applied"
    definition: JourneyDefinition
    at: Timestamp


class JourneyStatus(StrEnum):
    DRAFT = "draft"
    LAUNCHED = "launched"
    PAUSED = "paused"
    STOPPED = "stopped"


class JourneyAction(StrEnum):
    LAUNCH = "launch"
    PAUSE = "pause"
    RESUME = "resume"
    STOP = "stop"
    RENAME = "rename"


class JourneyStatusChanged(BaseModel):
    """A journey's lifecycle after ``action``: the whole of it, so that compaction may
    keep only the latest record."""

    model_config = CONTRACT

    kind: Literal["journey_status"] = "journey_status"
    journey_id: JourneyId
    action: JourneyAction
    status: JourneyStatus
    name: str
    launch: int = Field(ge=0, description="How many times it was launched (a run's prefix).")
    launched_at: Timestamp | None = None
    """When the current launch happened (schedules count from it)."""
    stopped_at: Timestamp | None = None
    at: Timestamp


DefinitionEventType = (
    SegmentApplied
    | SegmentDeleted
    | PresetApplied
    | PresetDeleted
    | JourneyApplied
    | JourneyStatusChanged
)
DefinitionEvent = Annotated[DefinitionEventType, Field(discriminator="kind")]
DEFINITION_EVENT: TypeAdapter[DefinitionEventType] = TypeAdapter(DefinitionEvent)


def record_key(event: DefinitionEventType) -> bytes:
    if isinstance(event, SegmentApplied):
        return f"segment:{event.definition.id}".encode()
    if isinstance(event, SegmentDeleted):
        return f"segment:{event.segment_id}".encode()
    if isinstance(event, PresetApplied):
        return f"preset:{event.definition.id}".encode()
    if isinstance(event, PresetDeleted):
        return f"preset:{event.preset_id}".encode()
    if isinstance(event, JourneyApplied):
        return f"journey:{event.definition.id}:{event.definition.version}".encode()
    return f"journey-status:{event.journey_id}".encode()


@dataclass
class Journey:
    """A journey in the registry: every applied version and the lifecycle."""

    versions: dict[int, JourneyDefinition] = field(default_factory=dict)
    status: JourneyStatusChanged | None = None
    renamed_last: bool = False
    """The status record came after the latest version: its name is the journey's (a
    rename); otherwise the latest version's name is."""

    @property
    def latest(self) -> JourneyDefinition:
        return self.versions[max(self.versions)]

    @property
    def state(self) -> JourneyStatus:
        return self.status.status if self.status else JourneyStatus.DRAFT

    @property
    def name(self) -> str:
        return self.status.name if self.status and self.renamed_last else self.latest.name


# action -> (the states it may start from, the state it leads to)
_TRANSITIONS: dict[JourneyAction, tuple[frozenset[JourneyStatus], JourneyStatus | None]] = {
    JourneyAction.LAUNCH: (
        frozenset({JourneyStatus.DRAFT, JourneyStatus.STOPPED}),
        JourneyStatus.LAUNCHED,
    ),
    JourneyAction.PAUSE: (frozenset({JourneyStatus.LAUNCHED}), JourneyStatus.PAUSED),
    JourneyAction.RESUME: (frozenset({JourneyStatus.PAUSED}), JourneyStatus.LAUNCHED),
    JourneyAction.STOP: (
        frozenset({JourneyStatus.LAUNCHED, JourneyStatus.PAUSED}),
        JourneyStatus.STOPPED,
    ),
    JourneyAction.RENAME: (frozenset(JourneyStatus), None),
}


class DefinitionRefused(ValueError):
    """A definition that cannot be applied; the message says what and where."""


class Definitions:
    """The registry of live segment, preset and journey definitions, folded from
    definition events."""

    def __init__(self) -> None:
        self.segments: dict[str, SegmentDefinition] = {}
        # Versions of deleted segments too, so a re-created segment gets a new one.
        self._versions: dict[str, int] = {}
        self.presets: dict[str, PresetDefinition] = {}
        self._preset_versions: dict[str, int] = {}
        self.journeys: dict[str, Journey] = {}

    def fold(self, event: DefinitionEventType) -> None:
        if isinstance(event, SegmentApplied):
            definition = event.definition
            self.segments[definition.id] = definition
            self._versions[definition.id] = definition.version
        elif isinstance(event, SegmentDeleted):
            self.segments.pop(event.segment_id, None)
            self._versions[event.segment_id] = event.version
        elif isinstance(event, PresetApplied):
            self.presets[event.definition.id] = event.definition
            self._preset_versions[event.definition.id] = event.definition.version
        elif isinstance(event, PresetDeleted):
            self.presets.pop(event.preset_id, None)
            self._preset_versions[event.preset_id] = event.version
        elif isinstance(event, JourneyApplied):
            journey = self.journeys.setdefault(event.definition.id, Journey())
            journey.versions[event.definition.version] = event.definition
            journey.renamed_last = False
        else:
            journey = self.journeys.setdefault(event.journey_id, Journey())
            journey.renamed_last = True
            journey.status = event

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
        users += sorted(
            f"journey {journey_id}"
            for journey_id, journey in self.journeys.items()
            if journey.state is not JourneyStatus.STOPPED
            and any(segment_id in version.segments for version in journey.versions.values())
        )
        if users:
            raise DefinitionRefused(
                f"segment '{segment_id}' is referred to by {', '.join(users)}: change those first"
            )
        return SegmentDeleted(segment_id=segment_id, version=self.next_version(segment_id), at=at)

    # --- presets --------------------------------------------------------------------

    def next_preset_version(self, preset_id: str) -> int:
        return self._preset_versions.get(preset_id, 0) + 1

    def prepare_preset(self, definition: PresetDefinition, at: datetime) -> PresetApplied:
        """Version a new or changed preset. Its channel may change only while no
        journey that may still send it uses it: their message steps name the channel."""
        current = self.presets.get(definition.id)
        if current is not None and current.channel != definition.channel:
            users = self._journeys_using_preset(definition.id)
            if users:
                raise DefinitionRefused(
                    f"preset '{definition.id}' is sent on {current.channel} by "
                    f"{', '.join(users)}: it cannot become {definition.channel}"
                )
        versioned = definition.model_copy(
            update={"version": self.next_preset_version(definition.id)}
        )
        return PresetApplied(definition=versioned, at=at)

    def prepare_preset_delete(self, preset_id: str, at: datetime) -> PresetDeleted:
        if preset_id not in self.presets:
            raise DefinitionRefused(f"no preset '{preset_id}'")
        users = self._journeys_using_preset(preset_id)
        if users:
            raise DefinitionRefused(
                f"preset '{preset_id}' is used by {', '.join(users)}: change or stop those first"
            )
        return PresetDeleted(
            preset_id=preset_id, version=self.next_preset_version(preset_id), at=at
        )

    def _journeys_using_preset(self, preset_id: str) -> list[str]:
        """Journeys not stopped with any version sending ``preset_id``: users inside
        stay on the version they entered, so an older version counts too."""
        return sorted(
            f"journey {journey_id}"
            for journey_id, journey in self.journeys.items()
            if journey.state is not JourneyStatus.STOPPED
            and any(preset_id in version.presets for version in journey.versions.values())
        )

    def preset_problems(self, definition: JourneyDefinition) -> list[str]:
        """Message steps whose preset is unknown or is for another channel."""
        problems: list[str] = []
        for node in definition.nodes:
            if not isinstance(node, MessageNode):
                continue
            preset = self.presets.get(node.preset)
            if preset is None:
                problems.append(
                    f"journey '{definition.id}' uses unknown preset '{node.preset}' "
                    f"(node '{node.id}')"
                )
            elif preset.channel != node.channel:
                problems.append(
                    f"journey '{definition.id}': node '{node.id}' sends on {node.channel} "
                    f"but preset '{node.preset}' is for {preset.channel}"
                )
        return problems

    # --- journeys -------------------------------------------------------------------

    def prepare_journey(self, definition: JourneyDefinition, at: datetime) -> JourneyApplied:
        """Check a new journey or a new version against the segments and presets, and
        version it."""
        problems = [
            f"journey '{definition.id}' uses unknown segment '{segment_id}'"
            for segment_id in sorted(definition.segments)
            if segment_id not in self.segments
        ]
        problems += self.preset_problems(definition)
        if problems:
            raise DefinitionRefused("; ".join(problems))
        journey = self.journeys.get(definition.id)
        version = max(journey.versions) + 1 if journey and journey.versions else 1
        return JourneyApplied(definition=definition.model_copy(update={"version": version}), at=at)

    def prepare_action(
        self, journey_id: str, action: JourneyAction, at: datetime, name: str | None = None
    ) -> JourneyStatusChanged:
        """The lifecycle after ``action``, or a refusal saying why it cannot happen."""
        journey = self.journeys.get(journey_id)
        if journey is None or not journey.versions:
            raise DefinitionRefused(f"no journey '{journey_id}'")
        allowed, target = _TRANSITIONS[action]
        current = journey.state
        if current not in allowed:
            raise DefinitionRefused(
                f"journey '{journey_id}' is {current}: it cannot {action} "
                f"(only when {', '.join(sorted(allowed))})"
            )
        if action is JourneyAction.RENAME and not name:
            raise DefinitionRefused("rename needs a new name")
        if action is JourneyAction.LAUNCH:
            missing = sorted(journey.latest.segments - set(self.segments))
            if missing:
                raise DefinitionRefused(
                    f"journey '{journey_id}' uses deleted segments: {', '.join(missing)}"
                )
            # A stopped journey's presets may have been deleted or changed since.
            problems = self.preset_problems(journey.latest)
            if problems:
                raise DefinitionRefused("; ".join(problems))
        status = journey.status
        launch = status.launch if status else 0
        return JourneyStatusChanged(
            journey_id=journey_id,
            action=action,
            status=target or current,
            name=name or journey.name,
            launch=launch + 1 if action is JourneyAction.LAUNCH else launch,
            launched_at=at if action is JourneyAction.LAUNCH else status and status.launched_at,
            stopped_at=at if action is JourneyAction.STOP else status and status.stopped_at,
            at=at,
        )
