"""What each kind of input does to a user's visits, in one table; and what happens
before any input: stale visits end, due visits move, membership changes apply."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from pydantic_core import to_jsonable_python

from engine.journeys import goals
from engine.journeys.catalog import matches
from engine.journeys.entries import enter, enter_audience
from engine.journeys.mover import Mover
from engine.journeys.state import PendingEntry, SeenEvent
from engine.journeys.types import AudienceRun, Stopped, Tick
from engine.segments.logic import MembershipChange
from engine.time import to_ms
from schemas.commands import Activity, JourneyEntryRequest, parse_command_id
from schemas.definitions import JourneyStatus
from schemas.events import Event
from schemas.feedback import Feedback, FeedbackStatus
from schemas.journey_nodes import WaitForEventNode
from schemas.journeys import ApiEntry, AudienceEntry, TriggerEntry

# --- before the input -------------------------------------------------------------------


def drop_stale(mover: Mover, now: int) -> None:
    """Visits of a journey stopped (or stopped and launched again) while this user's
    state was not swept, e.g. on a worker that was down: they end here. A catalog not
    loaded yet knows no journey: nothing is stale then."""
    state, catalog = mover.state, mover.catalog
    if (not state.visits and not state.pending) or not catalog.loaded:
        return
    for journey_id, visit in list(state.visits.items()):
        if not _current(mover, journey_id, visit.run):
            mover.trigger = f"stop:{journey_id}"
            mover.leave(journey_id, visit, Activity.DROPPED, "journey stopped", now)
    for journey_id in list(state.pending):
        if catalog.status(journey_id) is not JourneyStatus.LAUNCHED:
            state.unpend(journey_id)


def _current(mover: Mover, journey_id: str, run: str) -> bool:
    status = mover.catalog.status(journey_id)
    if status is None or status is JourneyStatus.STOPPED:
        return False
    return run.split("-", 1)[0] == str(mover.catalog.launch(journey_id))


def due(mover: Mover, now: int) -> None:
    """Move every visit and waiting entry whose instant has come, at that instant;
    close the conversion windows whose end has come."""
    state = mover.state
    if state.windows:
        goals.expire(state, now)
    if not state.visits and not state.pending:
        return
    while True:
        pending = [
            (entry.due, 0, journey_id)
            for journey_id, entry in state.pending.items()
            if entry.due <= now
        ]
        # An open or event seen while the journey was paused counts once it runs again.
        for journey_id, visit in state.visits.items():
            at = visit.moves_at()
            if at is not None and at <= now and not mover.paused(journey_id):
                pending.append((at, 1, journey_id))
        if not pending:
            return
        at, kind, journey_id = min(pending)
        mover.trigger = f"timer:{at}"
        if kind == 0:
            entry = state.unpend(journey_id)
            assert entry is not None
            enter_audience(mover, journey_id, entry.run, at)
        else:
            mover.wait_over(journey_id, at)


def left_segments(mover: Mover, changes: Sequence[MembershipChange], now: int) -> None:
    """Visits that entered with an audience leave when the user leaves its segment, if
    their journey says so."""
    left = {change.segment_id for change in changes if change.kind == "exited"}
    if not left:
        return
    for journey_id, visit in list(mover.state.visits.items()):
        definition = mover.catalog.version(journey_id, visit.version)
        if (
            definition is None
            or visit.kind != "audience"
            or not definition.settings.exit_when_leaving_segment
        ):
            continue
        segments = {
            entry.segment for entry in definition.entries if isinstance(entry, AudienceEntry)
        }
        if segments & left:
            mover.leave(journey_id, visit, Activity.DROPPED, "left segment", now)


# --- the inputs -------------------------------------------------------------------------


def _event(mover: Mover, event: Event, now: int) -> None:
    """Goals (inside, then after exit), awaited events, then trigger entries."""
    catalog = mover.catalog
    windows = mover.state.windows  # as before the event: a goal's exit opens one
    for journey_id, visit in list(mover.state.visits.items()):
        definition = catalog.version(journey_id, visit.version)
        if definition is None:
            continue
        for goal in definition.settings.goals:
            if matches(goal.match, event):
                mover.activity(
                    journey_id, visit, visit.node, Activity.GOAL, now, goal.name, mover.cause
                )
                if goal.exits:
                    mover.leave(journey_id, visit, Activity.EXITED, f"goal {goal.name}", now)
                    window = mover.state.windows.get(journey_id)
                    if window is not None and window is not windows.get(journey_id):
                        # Reached inside: not counted again after exit.
                        mover.state.open_window(journey_id, window._replace(done=(goal.name,)))
                    break
        else:
            node = definition.node(visit.node)
            if isinstance(node, WaitForEventNode) and visit.awaiting == "event":
                for branch in node.branches:
                    if any(matches(match, event) for match in branch.events):
                        if mover.paused(journey_id):
                            # A paused journey does not move: the first branch taken
                            # is decided on resume, at the event's instant.
                            if visit.seen is None:
                                visit.seen = SeenEvent(branch.name, now)
                        else:
                            mover.take(visit, definition, branch.name, now)
                        break
    if windows:
        goals.counted(mover, dict(windows), event, now)
    entered: set[str] = set()  # several matching entries still make one entry
    for journey_id, entry in catalog.triggers.get(event.name, ()):
        if journey_id not in entered and matches(entry.match, event):
            entered.add(journey_id)
            definition = catalog.open_for(journey_id, TriggerEntry)
            if definition is not None:
                properties = to_jsonable_python(event.attributes)
                enter(mover, definition, None, "trigger", properties, now)


_FEEDBACK_ACTIVITY = {
    FeedbackStatus.DELIVERED: Activity.DELIVERED,
    FeedbackStatus.OPENED: Activity.OPENED,
    FeedbackStatus.CLICKED: Activity.CLICKED,
    FeedbackStatus.BOUNCED: Activity.BOUNCED,
    FeedbackStatus.FAILED: Activity.FAILED,
}


def _feedback(mover: Mover, feedback: Feedback, now: int) -> None:
    """Opt-outs, the message's row, and an open that ends its split."""
    state = mover.state
    channel = feedback.channel
    unsubscribed = feedback.status is FeedbackStatus.UNSUBSCRIBED
    if unsubscribed and channel and channel not in state.opted_out:
        state.opted_out = [*state.opted_out, channel]
    ref = parse_command_id(feedback.command_id)
    if ref is None:
        return
    activity = _FEEDBACK_ACTIVITY.get(feedback.status)
    visit = state.visits.get(ref.journey)
    if activity is not None:
        # The visit's A/B branch, if it took it before this message (and still runs).
        variant = visit.variant if visit is not None and visit.run == ref.run else None
        mover.result.activity.append(
            mover.row(
                ref.journey,
                ref.version,
                ref.run,
                ref.node,
                activity,
                now,
                feedback.reason or "",
                feedback.command_id,
                cause=mover.cause,
                variant=variant.name if variant is not None and variant.step < ref.visit else "",
            )
        )
    if feedback.status not in (FeedbackStatus.OPENED, FeedbackStatus.CLICKED):
        return
    if state.windows or (visit is not None and visit.message is not None):
        goals.opened(state, ref.journey, ref.run, ref.node, feedback.command_id)
    if visit is None or visit.command != feedback.command_id or visit.awaiting != "split":
        return  # the wait is over (or this is another visit's message)
    if mover.paused(ref.journey):
        if visit.opened_at is None:
            visit.opened_at = now  # decided on resume
        return
    definition = mover.catalog.version(ref.journey, visit.version)
    if definition is not None:
        mover.take(visit, definition, "opened", now)


def _entry_request(mover: Mover, request: JourneyEntryRequest, now: int) -> None:
    definition = mover.catalog.open_for(request.journey_id, ApiEntry)
    if definition is not None:
        enter(mover, definition, None, "api", dict(request.properties), now)


def _audience_run(mover: Mover, run: AudienceRun, now: int) -> None:
    if run.due is not None and run.due > now:
        # Enter at the run's local time; membership is checked then.
        mover.state.pend(run.journey_id, PendingEntry(run.run, run.due))
        return
    enter_audience(mover, run.journey_id, run.run, now)


def _stopped(mover: Mover, stopped: Stopped, now: int) -> None:
    journey_id = stopped.journey_id
    mover.state.unpend(journey_id)
    visit = mover.state.visits.get(journey_id)
    if visit is not None:
        mover.leave(journey_id, visit, Activity.DROPPED, "journey stopped", now)


def _tick(mover: Mover, tick: Tick, now: int) -> None:
    """Time alone: the due visits moved already."""


class On(NamedTuple):
    cause: Callable[[Any], str]
    """The identity of the input, for the rows it makes directly (see
    ``JourneyActivity.cause``): never an instant, so a replay makes the same rows."""
    apply: Callable[[Mover, Any, int], None]
    at: Callable[[Any], int | None]
    """The input's own instant (ms), which the rows it makes carry as ``event_at``
    beside the instant it was applied at; None: the same instant."""


def _no_cause(input: Any) -> str:
    return ""


def _no_instant(input: Any) -> None:
    return None


INPUTS: dict[type[Any], On] = {
    Event: On(lambda event: f"e:{event.event_id}", _event, lambda event: to_ms(event.timestamp)),
    Feedback: On(
        lambda feedback: f"f:{feedback.feedback_id}",
        _feedback,
        lambda feedback: to_ms(feedback.timestamp),
    ),
    JourneyEntryRequest: On(
        lambda request: f"a:{request.entry_id}", _entry_request, lambda request: to_ms(request.at)
    ),
    AudienceRun: On(lambda run: f"r:{run.run}", _audience_run, _no_instant),
    Stopped: On(_no_cause, _stopped, _no_instant),
    Tick: On(_no_cause, _tick, _no_instant),
}
"""Input type -> what it does."""
