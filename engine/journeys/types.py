"""What the journey step takes besides the state (the user's facts, the input) and what
it returns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from engine.devices import Registry
from engine.journeys.state import JourneyState
from schemas.commands import JourneyEntryRequest
from schemas.events import Event
from schemas.feedback import Feedback

JSON = Any


# AudienceRun and Facts: NamedTuples, built per user of a launch, where a frozen
# dataclass's __init__ costs several times a tuple's.
class AudienceRun(NamedTuple):
    """A run of an audience entry reached this user: enter if in the segment (at
    ``due``, the run's instant in the user's zone, when later than now)."""

    journey_id: str
    run: str
    due: int | None = None


@dataclass(frozen=True, slots=True)
class Stopped:
    """The journey stopped: everyone inside drops out."""

    journey_id: str


@dataclass(frozen=True, slots=True)
class Tick:
    """Time alone: due visits move on (also after a resume)."""


Input = Event | Feedback | JourneyEntryRequest | AudienceRun | Stopped | Tick


class Facts(NamedTuple):
    """What the segment engine knows of the user after the same input."""

    user_id: str
    tags: Mapping[str, JSON]
    members: Mapping[str, int]
    devices: Registry | None = None
    """The user's device registry (None: none)."""


@dataclass(slots=True)
class JourneyResult:
    state: JourneyState | None
    """None when the user has no journey state at all."""
    commands: list[dict[str, Any]] = field(default_factory=list)
    """Fields of ``schemas.commands.SendCommand``."""
    activity: list[dict[str, Any]] = field(default_factory=list)
    """Fields of ``schemas.commands.JourneyActivity``."""
    tag_updates: list[dict[str, Any]] = field(default_factory=list)
    """Fields of ``schemas.tags.TagUpdate``, from update-profile steps."""
    next_due: int | None = None
    """When to call again with a ``Tick`` (ms)."""
