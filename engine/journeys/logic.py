"""The journey engine's one entry point: move one user through the journeys on one
input, and say what to send, what happened, and when to look again.

A user's journey state is a ``JourneyState`` (``engine.journeys.state``; stored by
``engine.journeys.codec``). Before an input is applied, visits whose time has come move
on at their own due instant, so a late timer never lets a late event or open win a race
it lost. Each input then does what its entry in ``engine.journeys.inputs.INPUTS`` says;
each step a visit reaches does what its entry in ``engine.journeys.steps.STEPS`` says.
Nothing here reads a clock or does I/O: ``now`` is given, outputs are returned.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from engine.journeys.catalog import Catalog
from engine.journeys.inputs import INPUTS, drop_stale, due, left_segments
from engine.journeys.mover import MAX_STEPS, Mover
from engine.journeys.state import JourneyState, Visit
from engine.journeys.types import AudienceRun, Facts, Input, JourneyResult, Stopped, Tick
from engine.segments.logic import MembershipChange
from schemas.commands import JourneyEntryRequest, parse_command_id
from schemas.definitions import JourneyStatus
from schemas.events import Event
from schemas.feedback import Feedback, FeedbackStatus


def step(
    catalog: Catalog,
    state: JourneyState | None,
    facts: Facts,
    input: Input,
    now: int,
    changes: Sequence[MembershipChange] = (),
    trigger: str = "",
    origin: tuple[str, int] | None = None,
) -> JourneyResult:
    """Apply due timers up to ``now``, the membership ``changes`` the same input made,
    then ``input`` itself. ``state`` is not changed: the result holds the new one (the
    same object when nothing changed). ``trigger`` names what made the input when the
    input alone does not say (a timer, a tag update, a definition change), ``origin``
    its record's topic letter and offset: both go in the rows, outside their identity."""
    idle = state is None or not (state.visits or state.pending or state.windows)
    if idle and not may_start(catalog, input):
        # The hot path: most inputs concern no journey of a user who is in none; the
        # state is left as it is (the same object).
        return JourneyResult(state)
    # (Literals: a launch builds one per user, and default factories cost more.)
    state = state.copy() if state is not None else JourneyState({}, {}, {}, [], [], {})
    on = INPUTS[type(input)]
    cause = on.cause(input)
    mover = Mover(catalog, state, facts, cause)
    drop_stale(mover, now)
    due(mover, now)
    mover.event_at = on.at(input)
    mover.trigger = trigger or cause or _trigger(input)
    mover.origin = origin
    if changes:
        left_segments(mover, changes, now)
    on.apply(mover, input, now)
    result = mover.result
    result.state = state if state else None
    result.next_due = next_due(catalog, result.state)
    return result


def _trigger(input: Input) -> str:
    """What made an input that names no cause of its own."""
    if isinstance(input, Stopped):
        return f"stop:{input.journey_id}"
    return "tick"


def next_due(catalog: Catalog, state: JourneyState | None) -> int | None:
    """The earliest instant a visit or a waiting entry of ``state`` moves (visits of
    paused journeys wait for the resume), or a conversion window closes."""
    if state is None:
        return None
    dues = [entry.due for entry in state.pending.values()]
    if state.windows:
        dues.extend(window.until for window in state.windows.values())
    for journey_id, visit in state.visits.items():
        at = visit.moves_at()
        if at is not None and catalog.status(journey_id) is not JourneyStatus.PAUSED:
            dues.append(at)
    return min(dues) if dues else None


def inside(state: JourneyState | None) -> Mapping[str, Visit]:
    """The user's visits in progress, by journey id."""
    return state.visits if state is not None else {}


def may_start(catalog: Catalog, input: Input) -> bool:
    """Whether ``input`` can concern a user who is in no journey: ``step`` with no
    state returns nothing otherwise."""
    if isinstance(input, Event):
        return input.name in catalog.triggers
    if isinstance(input, Feedback):
        # Stats of a journey's message, or an opt-out to remember.
        return (
            parse_command_id(input.command_id) is not None
            or input.status is FeedbackStatus.UNSUBSCRIBED
        )
    return isinstance(input, JourneyEntryRequest | AudienceRun)


__all__ = [
    "MAX_STEPS",
    "AudienceRun",
    "Facts",
    "Input",
    "JourneyResult",
    "JourneyState",
    "Stopped",
    "Tick",
    "Visit",
    "inside",
    "may_start",
    "next_due",
    "step",
]
