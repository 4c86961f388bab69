"""Goals counted outside a visit: the conversion window after exit, and the goals of
users held out of every journey (the global holdout).

A journey whose goals have ``after_exit`` remembers, in each visit, the message a goal
is attributed to (``LastMessage``: the last opened one, else the last sent one). When
the visit leaves, that becomes the user's ``ConversionWindow`` of the journey, open
until the longest ``after_exit`` after the last message; a matching event then writes a
``goal`` row at the attributed step ("<goal> after exit"), once per goal. The window
ends with the user's timer at its end, or when the user enters the journey again.

A user held out of every journey (``engine.journeys.holdout``) gets a ``held_out`` row
instead of each entry, and a window from that instant: their goals are ``holdout_goal``
rows, the holdout group's conversions."""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.journeys.catalog import matches
from engine.journeys.state import ConversionWindow, JourneyState, LastMessage, Visit
from schemas.commands import Activity, parse_command_id
from schemas.events import Event
from schemas.journeys import JourneyDefinition

if TYPE_CHECKING:
    from engine.journeys.mover import Mover

HELD_OUT = "global holdout"
"""The detail of a ``held_out`` row."""


def window_ms(definition: JourneyDefinition) -> int | None:
    """The longest ``after_exit`` of the journey's goals (ms); None: none has one."""
    longest = None
    for goal in definition.settings.goals:
        if goal.after_exit is not None:
            ms = goal.after_exit.ms
            if longest is None or ms > longest:
                longest = ms
    return longest


def sent(visit: Visit, definition: JourneyDefinition, step: str, command: str, now: int) -> None:
    """The visit sent the message ``command`` at ``step``: the one goals are attributed
    to unless an earlier one was opened."""
    if not definition.settings.goals or window_ms(definition) is None:
        return
    message = visit.message
    if message is not None and message.opened:
        visit.message = message._replace(at=now)
    else:
        visit.message = LastMessage(step, command, now)


def opened(state: JourneyState, journey_id: str, run: str, step: str, command: str) -> None:
    """The message ``command`` of ``run`` was opened (or clicked): goals are attributed
    to it from now on, inside the journey or after exit."""
    visit = state.visits.get(journey_id)
    if visit is not None and visit.run == run:
        if visit.message is not None:
            visit.message = visit.message._replace(step=step, command=command, opened=True)
        return
    window = state.windows.get(journey_id)
    if window is not None and window.run == run and not window.held_out:
        state.open_window(journey_id, window._replace(step=step, command=command, opened=True))


def left(mover: Mover, journey_id: str, visit: Visit, now: int) -> None:
    """The visit left: its conversion window opens, if its journey counts goals after
    exit and it sent a message."""
    message = visit.message
    if message is None:
        return
    definition = mover.catalog.version(journey_id, visit.version)
    window = window_ms(definition) if definition is not None else None
    if window is None or message.at + window <= now:
        return
    mover.state.open_window(
        journey_id,
        ConversionWindow(
            visit.version,
            visit.run,
            message.step,
            message.command,
            message.at,
            message.at + window,
            opened=message.opened,
        ),
    )


def held_out(mover: Mover, definition: JourneyDefinition, run: str, now: int) -> None:
    """The user is held out of this entry: a ``held_out`` row, and the holdout group's
    conversion window from now."""
    journey_id = definition.id
    mover.result.activity.append(
        mover.row(
            journey_id,
            definition.version,
            run,
            definition.start,
            Activity.HELD_OUT,
            now,
            HELD_OUT,
        )
    )  # no cause: one row per entry (its run), whichever input made it
    window = window_ms(definition)
    if window is not None:
        mover.state.open_window(
            journey_id,
            ConversionWindow(definition.version, run, definition.start, "", now, now + window),
        )


def counted(mover: Mover, windows: dict[str, ConversionWindow], event: Event, now: int) -> None:
    """Goals ``event`` reaches in the conversion ``windows`` (as they were before the
    event): a row for each goal not counted yet whose own window is open."""
    state = mover.state
    for journey_id, window in windows.items():
        if journey_id in state.visits or state.windows.get(journey_id) is not window:
            continue  # entered again (or changed) meanwhile
        definition = mover.catalog.version(journey_id, window.version)
        if definition is None:
            continue
        done = window.done
        for goal in definition.settings.goals:
            after = goal.after_exit
            if (
                after is None
                or goal.name in done
                or now >= window.last + after.ms
                or not matches(goal.match, event)
            ):
                continue
            done = (*done, goal.name)
            if window.held_out:
                activity, detail, visit = Activity.HOLDOUT_GOAL, goal.name, 0
            else:
                ref = parse_command_id(window.command)
                activity, detail = Activity.GOAL, f"{goal.name} after exit"
                visit = ref.visit if ref is not None else 0
            mover.result.activity.append(
                mover.row(
                    journey_id,
                    window.version,
                    window.run,
                    window.step,
                    activity,
                    now,
                    detail,
                    window.command,
                    visit,
                    mover.cause,
                )
            )
        if done != window.done:
            state.open_window(journey_id, window._replace(done=done))


def expire(state: JourneyState, now: int) -> None:
    """Windows whose end has come close."""
    if any(window.until <= now for window in state.windows.values()):
        state.windows = {
            journey_id: window for journey_id, window in state.windows.items() if window.until > now
        }
