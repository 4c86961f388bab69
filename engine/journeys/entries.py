"""Entering a journey: the re-entry rules, the visit's identity (its run), and the
first step."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.journeys import goals
from engine.journeys.state import Entered, EntryKind, Visit
from schemas.commands import Activity
from schemas.journeys import JourneyDefinition

if TYPE_CHECKING:
    from engine.journeys.mover import Mover


def enter_audience(mover: Mover, journey_id: str, run: str, now: int) -> None:
    """An audience run reached the user (at their local time): enter if a member of
    the journey's audience."""
    members = mover.facts.members
    for segment in mover.catalog.audiences.get(journey_id, ()):
        if segment in members:
            definition = mover.catalog.open.get(journey_id)
            if definition is not None:
                enter(mover, definition, run, "audience", {}, now)
            return


def enter(
    mover: Mover,
    definition: JourneyDefinition,
    run: str | None,
    kind: EntryKind,
    properties: dict[str, Any],
    now: int,
) -> None:
    """Enter the user into ``definition`` (``run``: the audience run, None for trigger
    and API entries), unless inside already or the re-entry rule keeps them out."""
    journey_id = definition.id
    state = mover.state
    history = state.history.get(journey_id)
    last_run, last_at, entries = history if history else (None, 0, 0)
    launch = mover.catalog.launch(journey_id)
    # Audience runs are named by the schedule; trigger and API entries by the user's
    # own count, so each entry's commands get their own ids.
    run = f"{launch}-{run}" if run is not None else f"{launch}-e{entries + 1}"
    reason = None
    if journey_id in state.visits:
        reason = "inside"
    elif history is not None:
        rule = definition.settings.reentry
        if rule.kind == "never" or last_run == run:
            reason = "already entered"
        elif rule.kind == "after" and rule.after and now - last_at < rule.after.ms:
            reason = "re-entry too soon"
    if reason is not None:
        if last_run != run:  # the same run's second entry is not news
            mover.result.activity.append(
                mover.row(
                    journey_id,
                    definition.version,
                    run,
                    definition.start,
                    Activity.SKIPPED,
                    now,
                    reason,
                    cause=mover.cause,
                )
            )
        return
    state.entered(journey_id, Entered(run, now, entries + 1))
    if state.windows:
        state.close_window(journey_id)  # a new entry: the last visit's window ends
    holdout = mover.catalog.holdout
    if holdout is not None and holdout.holds(mover.facts.user_id):
        goals.held_out(mover, definition, run, now)
        return
    visit = state.visits[journey_id] = Visit(
        definition.version, run, definition.start, 0, kind, properties
    )
    # One row says both: entered the journey, and its first step.
    mover.activity(journey_id, visit, definition.start, Activity.ENTERED, now, "journey")
    mover.arrive(visit, definition, now, announced=True)
