"""Decisions over all of a partition's users, for the runtime's catch-ups and sweeps:
which segments to re-evaluate after definition changes, which journeys stopped or
resumed since a partition last looked, and which input each user gets from a sweep (an
audience run, a stop, a resume). Each user's change then goes through the user
processor (``engine.processor.process``)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping
from datetime import datetime
from typing import Any, NamedTuple

from engine.journeys import logic as journeys
from engine.journeys.catalog import Catalog
from engine.journeys.schedule import Run, latest_due_run, user_run_instant, user_zone
from engine.processor import JourneyOnly, Model
from engine.record import UserRecord
from engine.time import to_ms
from schemas.definitions import JourneyStatus
from schemas.journey_nodes import USER_ZONE
from schemas.journeys import AudienceEntry


def segment_versions(model: Model) -> dict[str, int]:
    """Segment id -> version: what a partition records once its users were evaluated."""
    return {segment_id: d.version for segment_id, d in model.definitions.items()}


def segments_to_redo(
    model: Model,
    changed: Collection[str],
    applied: Mapping[str, Any] | None,
    members: Collection[str],
) -> frozenset[str]:
    """The segments to re-evaluate a partition's users for: ``changed``, and those whose
    version differs from the one the partition recorded (``applied``; None: never
    recorded, so every segment, and those its users are members of)."""
    versions = segment_versions(model)
    todo = set(changed)
    if applied is None:
        todo |= set(versions) | set(members)
    else:
        todo |= {s for s in versions.keys() | applied.keys() if applied.get(s) != versions.get(s)}
    return frozenset(todo)


def journey_statuses(catalog: Catalog) -> dict[str, list[Any]]:
    """Journey id -> ``[launch, status]``: what a partition records once swept."""
    return {
        journey_id: [journey.status.launch, journey.status.status.value]
        for journey_id, journey in catalog.journeys.items()
        if journey.status is not None
    }


def journey_sweeps(
    statuses: Mapping[str, list[Any]], applied: Mapping[str, Any] | None
) -> Iterator[tuple[str, JourneyOnly]]:
    """The sweeps a partition owes since it recorded ``applied``: (journey, input for
    its users inside) for each journey stopped (everyone drops out) or resumed (due
    visits move on). Never recorded: none (stale visits end lazily)."""
    if applied is None:
        return
    for journey_id, (launch, status) in sorted(statuses.items()):
        before = applied.get(journey_id)
        if before == [launch, status]:
            continue
        if status == JourneyStatus.STOPPED:
            yield journey_id, journeys.Stopped(journey_id)
        elif status == JourneyStatus.LAUNCHED and before == [launch, "paused"]:
            yield journey_id, journeys.Tick()


Pick = Callable[[UserRecord], JourneyOnly | None]
"""A sweep's choice of input per user (None: the user is left alone)."""


def inside(journey_id: str, input: JourneyOnly) -> Pick:
    """``input`` for the users inside ``journey_id`` (or waiting to enter)."""

    def pick(record: UserRecord) -> JourneyOnly | None:
        state = record.journeys.state if record.journeys is not None else None
        if state is not None and (journey_id in state.visits or journey_id in state.pending):
            return input
        return None

    return pick


def audience(catalog: Catalog, journey_id: str, entry: AudienceEntry, run: Run) -> Pick:
    """The run of ``entry`` for the members of its segment, at the run's instant in the
    user's zone when the schedule says so."""
    journey = catalog.journeys[journey_id]
    default_zone = journey.latest.settings.timezone
    in_user_zone = entry.schedule.timezone == USER_ZONE and run.local is not None

    def pick(record: UserRecord) -> JourneyOnly | None:
        if entry.segment not in record.members:
            return None
        due = None
        if in_user_zone:
            zone = user_zone(record.segments.tags, default_zone)
            due = to_ms(user_run_instant(run, zone))
        return journeys.AudienceRun(journey_id, run.id, due)

    return pick


class DueRun(NamedTuple):
    """An audience entry's run to start now."""

    marker: str
    """The entry (``journey/number``): where its last run started is kept."""
    journey_id: str
    entry: AudienceEntry
    launch: int
    """The launch the run belongs to."""
    run: Run


def due_runs(
    catalog: Catalog, last_run: Callable[[str, int], Run | None], now: datetime
) -> Iterator[DueRun]:
    """The runs of launched journeys' audience entries due at ``now``, given the last
    run started per entry and launch (``last_run(marker, launch)``). Only the latest
    due run of an entry starts: runs missed while nothing ran are not caught up."""
    for journey_id, journey in sorted(catalog.journeys.items()):
        status = journey.status
        if (
            journey.state is not JourneyStatus.LAUNCHED
            or status is None
            or status.launched_at is None
        ):
            continue
        for number, entry in enumerate(journey.latest.entries):
            if not isinstance(entry, AudienceEntry):
                continue
            marker = f"{journey_id}/{number}"
            after = last_run(marker, status.launch)
            run = latest_due_run(entry.schedule, status.launched_at, after, now)
            if run is not None:
                yield DueRun(marker, journey_id, entry, status.launch, run)
