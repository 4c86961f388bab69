"""The segment engine's one entry point: fold an input into a user's state, evaluate
the segments it can affect, and say what changed and when to look again.

The agent around it loads the user's state and memberships, calls ``step``, stores
what it returns, emits the membership changes, and sets the user's timer to
``next_timer``; when the timer fires it calls ``step`` with a ``Tick``. Nothing here
reads a clock or does I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from agents.segments.index import SegmentIndex
from agents.segments.state import (
    DEFAULT_TAGS,
    JSON,
    UserState,
    apply_event,
    apply_feedback,
    apply_tag_update,
    from_ms,
    input_hash,
    remembered,
    to_ms,
)
from schemas.events import Event
from schemas.feedback import Feedback
from schemas.segments import SegmentDefinition
from schemas.tags import TagUpdate


@dataclass(frozen=True, slots=True)
class Tick:
    """Time alone: a timer fired. The segments whose timer is due are evaluated, with
    their referrers; ``full`` evaluates every segment (a sweep, e.g. after a restore)."""

    full: bool = False


@dataclass(frozen=True, slots=True)
class JourneyFeedback:
    """Feedback with the journey and step of its send command, where the caller knows
    them (``Feedback`` itself carries only the command id and the channel)."""

    feedback: Feedback
    journey: str | None = None
    step: str | None = None


Input = Event | TagUpdate | Feedback | JourneyFeedback | Tick


@dataclass(frozen=True, slots=True)
class MembershipChange:
    segment_id: str
    kind: Literal["entered", "exited"]
    at: datetime
    version: int
    """The definition version that decided it (for a deleted segment: the version the
    user was a member of)."""


@dataclass(frozen=True, slots=True)
class StepResult:
    state: UserState
    memberships: Mapping[str, int]
    """Segment id -> definition version, for the segments the user is in."""
    changes: tuple[MembershipChange, ...]
    next_timer: datetime | None
    """When to call ``step`` with a ``Tick``; may be in the past (then: now)."""


def step(
    index: SegmentIndex,
    definitions: Mapping[str, SegmentDefinition],
    state: UserState,
    memberships: Mapping[str, int],
    input: Input,
    now: datetime,
) -> StepResult:
    """Apply one input at ``now`` and re-evaluate the segments it can affect.

    A record whose id is among the user's last few inputs is a re-send: it changes
    nothing. A user's first input evaluates every segment (some hold with no data at
    all: ``count = 0``, ``not_exists``). A full ``Tick`` also ends the membership of
    segments that are no longer defined.
    """
    if isinstance(input, Tick):
        if input.full:
            return _evaluate(index, definitions, state, memberships, index.order, now, sweep=True)
        instant = to_ms(now)
        due = [key for key, when in state.timers.items() if when <= instant]
        return _evaluate(index, definitions, state, memberships, index.affected(due), now)
    record = _record_hash(input)
    if record in state.recent:
        return StepResult(state, memberships, (), _next_timer(state.timers))
    affected: tuple[str, ...]
    if isinstance(input, Event):
        new = apply_event(state, input, index.counted, now=now, horizon=index.horizon)
        affected = index.for_event(input.name, _changed_defaults(state.tags, new.tags))
    elif isinstance(input, TagUpdate):
        new = apply_tag_update(state, input)
        affected = index.for_tags(input.tags)
    else:
        feedback, journey, route = (
            (input.feedback, input.journey, input.step)
            if isinstance(input, JourneyFeedback)
            else (input, None, None)
        )
        new = apply_feedback(
            state,
            feedback,
            index.counted,
            journey=journey,
            step=route,
            now=now,
            horizon=index.horizon,
        )
        affected = index.for_feedback() if new is not state else ()
    if state.seen is None and not state.tags and not state.messages and not state.recent:
        affected = index.order  # a new user
    # Remembered in the one copy that also takes the timers (none read the hashes).
    recent = remembered(new.recent, record)
    return _evaluate(index, definitions, new, memberships, affected, now, recent=recent)


def on_definitions_changed(
    index: SegmentIndex,
    definitions: Mapping[str, SegmentDefinition],
    state: UserState,
    memberships: Mapping[str, int],
    changed: Collection[str],
    now: datetime,
) -> StepResult:
    """Re-evaluate one user after the segments ``changed`` were applied or deleted:
    those still defined and their referrers are evaluated, and membership of a
    segment that is no longer defined ends. ``index`` is built from ``definitions``."""
    affected = index.affected(segment_id for segment_id in changed if segment_id in definitions)
    return _evaluate(index, definitions, state, memberships, affected, now, sweep=True)


def _evaluate(
    index: SegmentIndex,
    definitions: Mapping[str, SegmentDefinition],
    state: UserState,
    memberships: Mapping[str, int],
    affected: Iterable[str],
    now: datetime,
    *,
    sweep: bool = False,
    recent: tuple[int, ...] | None = None,
) -> StepResult:
    instant = to_ms(now)
    members = dict(memberships)
    timers = dict(state.timers)
    changes: list[MembershipChange] = []
    member_of = members.__contains__  # referred segments were evaluated first
    plans = index.plans
    for segment_id in affected:
        definition = definitions.get(segment_id)
        if definition is None:  # a stale timer of a deleted segment
            timers.pop(segment_id, None)
            continue
        verdict, zone = plans[segment_id]
        inside, due = verdict(state, instant, zone, member_of)
        if inside:
            if segment_id not in members:
                changes.append(MembershipChange(segment_id, "entered", now, definition.version))
            members[segment_id] = definition.version
        elif segment_id in members:
            del members[segment_id]
            changes.append(MembershipChange(segment_id, "exited", now, definition.version))
        if due is None:
            timers.pop(segment_id, None)
        else:
            timers[segment_id] = due
    if sweep:
        for segment_id in sorted(set(members) - set(definitions)):
            changes.append(MembershipChange(segment_id, "exited", now, members.pop(segment_id)))
    if not timers.keys() <= definitions.keys():
        # A deleted segment's timer would stay due for ever: a tick that never ends it.
        timers = {key: due for key, due in timers.items() if key in definitions}
    if timers != state.timers:
        state = state.with_(timers=timers, recent=recent)
    elif recent is not None:
        state = state.with_(recent=recent)
    return StepResult(state, members, tuple(changes), _next_timer(timers))


def _next_timer(timers: Mapping[str, int]) -> datetime | None:
    return from_ms(min(timers.values())) if timers else None


def _changed_defaults(old: Mapping[str, JSON], new: Mapping[str, JSON]) -> list[str]:
    if old is new:
        return []
    return [name for name in DEFAULT_TAGS if old.get(name) != new.get(name)]


def _record_hash(input: Event | TagUpdate | Feedback | JourneyFeedback) -> int:
    if isinstance(input, Event):
        return input_hash("event", input.event_id)
    if isinstance(input, TagUpdate):
        return input_hash("tags", input.update_id)
    feedback = input.feedback if isinstance(input, JourneyFeedback) else input
    return input_hash("feedback", feedback.feedback_id)
