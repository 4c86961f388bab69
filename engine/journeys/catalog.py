"""What the journey logic needs to know of the registry, indexed once per change:
which journeys are open for entries, and which event names any journey listens to
(so an event no journey cares about costs one set lookup)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, tzinfo
from typing import Any

from engine.journeys.holdout import Holdout
from engine.segments.defaults import stored
from engine.segments.evaluate import compile_predicate
from engine.time import to_ms
from schemas.definitions import Journey, JourneyStatus
from schemas.events import Event
from schemas.journey_nodes import EventMatch, WaitForEventNode
from schemas.journeys import ApiEntry, AudienceEntry, JourneyDefinition, TriggerEntry


def matches(match: EventMatch, event: Event) -> bool:
    """Whether ``event`` is ``match``'s event and passes its filters (relative dates
    count back from the event's own time)."""
    if event.name != match.event:
        return False
    if not match.filters:
        return True
    at = to_ms(event.timestamp)
    zone: tzinfo = UTC
    for item in match.filters:
        raw = event.attributes.get(item.attribute)
        if not compile_predicate(item)(None if raw is None else stored(raw), at, zone):
            return False
    return True


@dataclass(frozen=True)
class Catalog:
    journeys: Mapping[str, Journey]
    triggers: Mapping[str, tuple[tuple[str, TriggerEntry], ...]] = field(default_factory=dict)
    """Event name -> (journey id, entry) of launched journeys' trigger entries."""
    listened: frozenset[str] = frozenset()
    """Event names any version of any journey reads (triggers, waits, goals)."""
    open: Mapping[str, JourneyDefinition] = field(default_factory=dict)
    """Launched journeys' latest versions, by id (looked up once per entry)."""
    audiences: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Launched journeys' audience segments, by journey id."""
    loaded: bool = True
    """False until the registry was read: a journey missing then is not known yet."""
    holdout: Holdout | None = None
    """The global holdout: users it holds enter no journey (None: nobody is held)."""

    @classmethod
    def unloaded(cls, holdout: Holdout | None = None) -> Catalog:
        """The catalog before the registry is read: it knows no journey yet."""
        return cls(journeys={}, loaded=False, holdout=holdout)

    @classmethod
    def build(cls, journeys: Mapping[str, Journey], holdout: Holdout | None = None) -> Catalog:
        triggers: dict[str, list[tuple[str, TriggerEntry]]] = {}
        listened: set[str] = set()
        launched: dict[str, JourneyDefinition] = {}
        audiences: dict[str, tuple[str, ...]] = {}
        for journey_id, journey in sorted(journeys.items()):
            if not journey.versions:
                continue
            if journey.state is JourneyStatus.LAUNCHED:
                latest = launched[journey_id] = journey.latest
                audiences[journey_id] = tuple(
                    entry.segment for entry in latest.entries if isinstance(entry, AudienceEntry)
                )
                for entry in latest.entries:
                    if isinstance(entry, TriggerEntry):
                        triggers.setdefault(entry.match.event, []).append((journey_id, entry))
            for version in journey.versions.values():
                listened |= _listened(version)
        return cls(
            journeys=dict(journeys),
            triggers={name: tuple(pairs) for name, pairs in triggers.items()},
            listened=frozenset(listened | set(triggers)),
            open=launched,
            audiences=audiences,
            holdout=holdout if holdout is not None and holdout.percent > 0 else None,
        )

    def status(self, journey_id: str) -> JourneyStatus | None:
        journey = self.journeys.get(journey_id)
        return journey.state if journey else None

    def launch(self, journey_id: str) -> int:
        journey = self.journeys[journey_id]
        return journey.status.launch if journey.status else 0

    def version(self, journey_id: str, version: int) -> JourneyDefinition | None:
        journey = self.journeys.get(journey_id)
        return journey.versions.get(version) if journey else None

    def open_for(self, journey_id: str, kind: type[Any]) -> JourneyDefinition | None:
        """The latest version of a launched journey with an entry of ``kind``."""
        latest = self.open.get(journey_id)
        if latest is None:
            return None
        for entry in latest.entries:
            if type(entry) is kind:
                return latest
        return None


def _listened(journey: JourneyDefinition) -> set[str]:
    names = {goal.match.event for goal in journey.settings.goals}
    for node in journey.nodes:
        if isinstance(node, WaitForEventNode):
            names |= {match.event for branch in node.branches for match in branch.events}
    for entry in journey.entries:
        if isinstance(entry, TriggerEntry):
            names.add(entry.match.event)
    return names


__all__ = ["ApiEntry", "AudienceEntry", "Catalog", "matches"]
