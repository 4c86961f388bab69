"""A journey's status as reported: the stored lifecycle (draft, launched, paused,
stopped), plus ``finished``, derived when read.

A launched journey is finished when no entry can admit anyone any more and nobody is
inside. Only audience entries run out: a schedule is over once its last run has come
due and, for a run in the users' zones, has reached the last zone on earth (its
``latest`` instant: until then members wait for their local time before they enter).
Trigger and API entries admit users as long as the journey is launched. Whether anyone
is inside is the journey statistics' ``inside_now``; a caller that cannot know it
passes None, and a launched journey then stays ``launched``.

Pure functions: no clock reads, no I/O.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from engine.journeys.schedule import Run, due_runs, next_run
from schemas.definitions import JourneyStatus, JourneyStatusChanged
from schemas.journeys import AudienceEntry, Entry, JourneyDefinition, Schedule

Status = Literal["draft", "launched", "paused", "stopped", "finished"]
FINISHED: Status = "finished"
STATUSES: tuple[Status, ...] = ("draft", "launched", "paused", "stopped", "finished")

_STORED: dict[JourneyStatus, Status] = {
    JourneyStatus.DRAFT: "draft",
    JourneyStatus.LAUNCHED: "launched",
    JourneyStatus.PAUSED: "paused",
    JourneyStatus.STOPPED: "stopped",
}
_BATCH = 100
"""Runs taken per call of ``due_runs`` while looking for the latest due one."""


def last_due_run(schedule: Schedule, launched_at: datetime, now: datetime) -> Run | None:
    """The schedule's latest run that has come due (started somewhere) by ``now``."""
    last: Run | None = None
    while True:
        due = due_runs(schedule, launched_at, last, now, limit=_BATCH)
        if not due:
            return last
        last = due[-1]
        if len(due) < _BATCH:
            return last


def schedule_over(schedule: Schedule, launched_at: datetime, now: datetime) -> bool:
    """No run of ``schedule`` can still enter anyone at ``now``: its last run came due
    and reached every zone, or it has no run at all."""
    if schedule.kind == "recurring" and schedule.until is None:
        return False  # runs for ever
    last = last_due_run(schedule, launched_at, now)
    if next_run(schedule, launched_at, last) is not None:
        return False
    return last is None or last.latest <= now


def entry_over(entry: Entry, launched_at: datetime, now: datetime) -> bool:
    """Whether ``entry`` can admit nobody any more: only audience entries run out."""
    return isinstance(entry, AudienceEntry) and schedule_over(entry.schedule, launched_at, now)


def entries_over(
    definition: JourneyDefinition, status: JourneyStatusChanged | None, now: datetime
) -> bool:
    """The journey is launched and none of its entries can admit anyone any more:
    whether it is finished then hangs on who is inside."""
    if status is None or status.status is not JourneyStatus.LAUNCHED:
        return False
    launched_at = status.launched_at
    if launched_at is None:
        return False
    return all(entry_over(entry, launched_at, now) for entry in definition.entries)


def derived_status(
    definition: JourneyDefinition,
    status: JourneyStatusChanged | None,
    now: datetime,
    inside_now: int | None,
) -> Status:
    """The status to report for a journey whose latest version is ``definition`` and
    whose lifecycle is ``status`` (None: never launched), at ``now``, with
    ``inside_now`` users inside (None: not known)."""
    stored = _STORED[status.status] if status is not None else "draft"
    if inside_now is not None and inside_now <= 0 and entries_over(definition, status, now):
        return FINISHED
    return stored
