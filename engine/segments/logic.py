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
from typing import Any, Literal, NamedTuple

from engine.segments.defaults import DEFAULT_TAGS, JSON
from engine.segments.index import SegmentIndex
from engine.segments.reasons import values
from engine.segments.state import (
    UserState,
    apply_event,
    apply_feedback,
    apply_tag_update,
    input_hash,
    remembered,
)
from engine.time import from_ms, to_ms
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


@dataclass(frozen=True, slots=True)
class DevicesChanged:
    """The user's device registry changed (a device update, or an unsubscribe that
    became an opt-out): ``channels`` is its new ``engine.devices.summary``. ``kind`` and
    ``record_id`` name the input record, to skip a re-send."""

    channels: Mapping[str, int]
    kind: str
    record_id: str


Input = Event | TagUpdate | Feedback | JourneyFeedback | DevicesChanged | Tick


# MembershipChange and StepResult are NamedTuples, not frozen dataclasses: one of each
# per input, where a frozen dataclass's __init__ costs several times a tuple's.
class MembershipChange(NamedTuple):
    segment_id: str
    kind: Literal["entered", "exited"]
    at: datetime
    version: int
    """The definition version that decided it (for a deleted segment: the version the
    user was a member of)."""
    values: list[Any] | None = None
    """The value each leaf condition of the definition read at ``at``
    (``engine.segments.reasons``), computed only for a change; None for a segment
    deleted."""


class StepResult(NamedTuple):
    state: UserState
    memberships: Mapping[str, int]
    """Segment id -> definition version, for the segments the user is in (the mapping
    given to ``step`` itself when it did not change: copy it before changing it)."""
    changes: tuple[MembershipChange, ...]
    next_timer_ms: int | None
    """When to call ``step`` with a ``Tick`` (ms); may be in the past (then: now)."""

    @property
    def next_timer(self) -> datetime | None:
        """``next_timer_ms`` as an instant."""
        return from_ms(self.next_timer_ms) if self.next_timer_ms is not None else None


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
        affected = index.for_event(
            input.name, _changed_defaults(state.tags, new.tags, index.by_tag)
        )
    elif isinstance(input, TagUpdate):
        new = apply_tag_update(state, input)
        affected = index.for_tags(input.tags)
    elif isinstance(input, DevicesChanged):
        if dict(input.channels) == dict(state.channels):
            new, affected = state, ()
        else:
            new = state.with_(channels=input.channels)
            affected = index.for_devices()
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
    """Evaluate ``affected`` in order. Memberships and timers are copied only when
    something in them changes."""
    instant = to_ms(now)
    members: Mapping[str, int] = memberships
    timers: Mapping[str, int] = state.timers
    # The copies, once something in them changes (then the same as the two above).
    own_members: dict[str, int] | None = None
    own_timers: dict[str, int] | None = None
    changes: list[MembershipChange] = []
    member_of = members.__contains__  # referred segments were evaluated first
    plans = index.plans
    for segment_id in affected:
        definition = definitions.get(segment_id)
        if definition is None:  # a stale timer of a deleted segment
            if segment_id in timers:
                timers = own_timers = dict(timers) if own_timers is None else own_timers
                del own_timers[segment_id]
            continue
        verdict, zone = plans[segment_id]
        inside, due = verdict(state, instant, zone, member_of)
        if inside:
            if members.get(segment_id) != definition.version:
                if own_members is None:
                    members = own_members = dict(members)
                    member_of = members.__contains__
                if segment_id not in members:
                    why = values(definition.condition, state, instant, zone, member_of)
                    changes.append(
                        MembershipChange(segment_id, "entered", now, definition.version, why)
                    )
                own_members[segment_id] = definition.version
        elif segment_id in members:
            if own_members is None:
                members = own_members = dict(members)
                member_of = members.__contains__
            del own_members[segment_id]
            why = values(definition.condition, state, instant, zone, member_of)
            changes.append(MembershipChange(segment_id, "exited", now, definition.version, why))
        if timers.get(segment_id) != due:
            timers = own_timers = dict(timers) if own_timers is None else own_timers
            if due is None:
                del own_timers[segment_id]
            else:
                own_timers[segment_id] = due
    if sweep:
        gone = sorted(segment_id for segment_id in members if segment_id not in definitions)
        if gone:
            members = own_members = dict(members) if own_members is None else own_members
            for segment_id in gone:
                version = own_members.pop(segment_id)
                changes.append(MembershipChange(segment_id, "exited", now, version))
    if not timers.keys() <= definitions.keys():
        # A deleted segment's timer would stay due for ever: a tick that never ends it.
        timers = own_timers = {key: due for key, due in timers.items() if key in definitions}
    if own_timers is not None and timers != state.timers:
        state = state.with_(timers=timers, recent=recent)
    elif recent is not None:
        state = state.with_(recent=recent)
    return StepResult(state, members, tuple(changes), _next_timer(timers))


def _next_timer(timers: Mapping[str, int]) -> int | None:
    return min(timers.values()) if timers else None


def _changed_defaults(
    old: Mapping[str, JSON], new: Mapping[str, JSON], read: Collection[str]
) -> list[str]:
    """The default tags that changed and some segment ``read``s."""
    if old is new:
        return []
    return [name for name in DEFAULT_TAGS if name in read and old.get(name) != new.get(name)]


def _record_hash(input: Event | TagUpdate | Feedback | JourneyFeedback | DevicesChanged) -> int:
    if isinstance(input, Event):
        return input_hash("event", input.event_id)
    if isinstance(input, TagUpdate):
        return input_hash("tags", input.update_id)
    if isinstance(input, DevicesChanged):
        return input_hash(input.kind, input.record_id)
    feedback = input.feedback if isinstance(input, JourneyFeedback) else input
    return input_hash("feedback", feedback.feedback_id)
