"""The user processor: one user's record, one input, the current definitions and the
time in; the new record, its outputs and the user's next timer out.

    load → segments.step → journeys.step → store → outputs → next timer

``process`` is that path, and every state change of a user takes it: input records
(events, tag updates, feedback), API journey entries, timers, definition changes,
audience runs, journey stops and resumes. It does no I/O: the runtime (the Faust
adapter in ``agents.segments.agent``, or ``engine.testing``) loads the record, calls,
stores the record, sends the outputs and queues the timer.

The decisions over all of a partition's users (which segments to re-evaluate, which
journeys stopped or resumed, which users an audience run reaches) are in
``engine.sweeps``."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from engine import devices as registry
from engine.journeys import logic as journeys
from engine.journeys.catalog import Catalog
from engine.journeys.holdout import Holdout
from engine.profiles import profile_outputs
from engine.record import UNREAD, JourneyPart, SegmentPart, UserRecord
from engine.segments import logic as segments
from engine.segments.counters import DEFAULT_HORIZON
from engine.segments.index import SegmentIndex
from engine.segments.logic import DevicesChanged, JourneyFeedback, StepResult
from engine.time import from_ms, to_ms
from schemas.commands import JourneyEntryRequest, parse_command_id
from schemas.definitions import Journey
from schemas.devices import DeviceUpdate
from schemas.events import Event
from schemas.feedback import Feedback, FeedbackStatus
from schemas.identity import content_id
from schemas.segments import SegmentDefinition
from schemas.tags import TagUpdate

Record = dict[str, Any]
"""One output item (a membership change, a send command, ...) as sent on its topic."""

UserInput = Event | TagUpdate | Feedback | DeviceUpdate


@dataclass(frozen=True, slots=True)
class Model:
    """The current definitions, indexed: what every user is processed against."""

    index: SegmentIndex
    definitions: Mapping[str, SegmentDefinition]
    catalog: Catalog
    journeys: bool = True
    """Whether journeys run (a worker without journey topics moves segments only)."""

    @classmethod
    def build(
        cls,
        definitions: Mapping[str, SegmentDefinition],
        registry: Mapping[str, Journey] | None = None,
        horizon: timedelta = DEFAULT_HORIZON,
        journeys: bool = True,
        holdout: Holdout | None = None,
    ) -> Model:
        """From the registry's segments and journeys (None: not read yet); ``holdout``:
        the global holdout, kept by every later catalog."""
        catalog = (
            Catalog.unloaded(holdout) if registry is None else Catalog.build(registry, holdout)
        )
        definitions = dict(definitions)
        return cls(SegmentIndex.build(definitions, horizon), definitions, catalog, journeys)

    def with_segments(self, definitions: Mapping[str, SegmentDefinition]) -> Model:
        definitions = dict(definitions)
        index = SegmentIndex.build(definitions, self.index.horizon)
        return replace(self, index=index, definitions=definitions)

    def with_journeys(self, registry: Mapping[str, Journey]) -> Model:
        return replace(self, catalog=Catalog.build(registry, self.catalog.holdout))


# --- inputs: what can happen to a user --------------------------------------------------


class Received(NamedTuple):
    """An input record's item (``source``: its topic's letter, ``offset``: the record's)."""

    item: UserInput
    source: str
    offset: int
    not_before_seen: bool = False
    """Simulated time: never before the user's newest event (a user's own time never
    goes back)."""


class Entered(NamedTuple):
    """A journey entry requested through the API (``offset``: its record's)."""

    request: JourneyEntryRequest
    offset: int


class TimerDue(NamedTuple):
    """The user's timer set for ``at`` (ms) is due; stale when the record's timer moved."""

    at: int


class Redefined(NamedTuple):
    """The segments ``changed`` were applied or deleted (or redone after a restart)."""

    changed: frozenset[str]


JourneyOnly = journeys.AudienceRun | journeys.Stopped | journeys.Tick
"""Inputs of journey sweeps (an audience run, a stop, a resume): segments do not move."""

Input = Received | Entered | TimerDue | Redefined | JourneyOnly


class Outcome(NamedTuple):
    record: UserRecord
    """The new record, to store; ``record.timer`` is the user's next timer."""
    changes: list[Record]
    """Membership changes (fields of ``schemas.memberships.MembershipChanged``)."""
    commands: list[Record]
    """Send commands (fields of ``schemas.commands.SendCommand``)."""
    activity: list[Record]
    """Journey activity (fields of ``schemas.commands.JourneyActivity``)."""
    tag_updates: list[Record]
    """Tag updates of update-profile steps (fields of ``schemas.tags.TagUpdate``)."""
    profiles: list[Record]
    """The user's profile when the input changed their tags or opt-outs (at most one,
    ``engine.profiles.profile_record``)."""
    refused: list[tuple[UserInput, str]] = []
    """Input items the engine refused, and why (a device beyond the limit): for the
    dead letters."""


_NONE: list[Record] = []  # shared, never appended to


def applied(record: UserRecord, source: str, offset: int) -> bool:
    """Whether the input record at ``offset`` of ``source`` is already in the record (a
    replay). Ask once per user and input record: applying its first item moves it."""
    return record.offsets.get(source, -1) >= offset


def process(
    model: Model, user: str, record: UserRecord, input: Input, now: datetime
) -> Outcome | None:
    """Move ``user``'s ``record`` on ``input`` at ``now``; None: nothing to do (a stale
    timer, a definition change that changes nothing for the user)."""
    kind = type(input)
    if kind is Received:
        assert isinstance(input, Received)
        return received(
            model, user, record, input.item, input.source, input.offset, now, input.not_before_seen
        )
    if kind is TimerDue:
        assert isinstance(input, TimerDue)
        return timer_due(model, user, record, input.at, to_ms(now))
    if kind is Redefined:
        assert isinstance(input, Redefined)
        return redefined(model, user, record, input.changed, now)
    if kind is Entered:
        assert isinstance(input, Entered)
        request = input.request
        offsets = {**record.offsets, "a": input.offset}
        return _moved(
            model, user, record, offsets, None, request, request.at, origin=("a", input.offset)
        )
    assert isinstance(input, journeys.AudienceRun | journeys.Stopped | journeys.Tick)
    return _moved(model, user, record, record.offsets, None, input, now)


# The cases of ``process`` the runtime calls most, callable without building an input
# (a worker calls them once per input item and per timer).


def received(
    model: Model,
    user: str,
    record: UserRecord,
    item: UserInput,
    source: str,
    offset: int,
    now: datetime,
    not_before_seen: bool = False,
) -> Outcome:
    """``process`` of ``Received(item, source, offset, not_before_seen)``."""
    state = record.segments.state
    if not_before_seen and state.seen is not None and to_ms(now) < state.seen:
        now = from_ms(state.seen)
    segment_input: segments.Input
    journey_input: journeys.Input
    refused = _NOT_REFUSED
    before: UserRecord | None = None
    if type(item) is DeviceUpdate or (
        type(item) is Feedback and item.status is FeedbackStatus.UNSUBSCRIBED and item.channel
    ):
        assert isinstance(item, DeviceUpdate | Feedback)
        before = record
        record, segment_input, refused = _devices_changed(record, item, now)
        journey_input = item if isinstance(item, Feedback) else journeys.Tick()
    elif isinstance(item, Event):
        segment_input = journey_input = item
    elif isinstance(item, Feedback):
        segment_input = journey_input = item
        # A journey's command id names its journey and step, for message conditions by
        # journey or step.
        ref = parse_command_id(item.command_id)
        if ref is not None:
            segment_input = JourneyFeedback(item, ref.journey, ref.node)
    else:
        assert isinstance(item, TagUpdate)
        segment_input = item
        journey_input = journeys.Tick()
    result = segments.step(
        model.index, model.definitions, state, record.members, segment_input, now
    )
    offsets = {**record.offsets, source: offset}
    cause = _cause(item)
    outcome = _moved(
        model, user, record, offsets, result, journey_input, now, cause, (source, offset)
    )
    if before is not None and record.devices is not before.devices and not outcome.profiles:
        # A device or consent change: the profile's reachability may have moved.
        profiles = profile_outputs(
            user, before, outcome.record, result.state.tags, None, now, cause, True
        )
        outcome = outcome._replace(profiles=profiles)
    return outcome if not refused else outcome._replace(refused=refused)


_NOT_REFUSED: list[tuple[UserInput, str]] = []  # shared, never appended to


def _devices_changed(
    record: UserRecord, item: DeviceUpdate | Feedback, now: datetime
) -> tuple[UserRecord, DevicesChanged, list[tuple[UserInput, str]]]:
    """A device update, or an unsubscribe (an opt-out of its channel), folded into the
    record's device registry; the segments' input that says so."""
    before = record.devices or registry.NO_DEVICES
    refused = _NOT_REFUSED
    if isinstance(item, DeviceUpdate):
        applied_ = registry.apply(before, item, to_ms(now))
        after = applied_.registry
        if applied_.refused is not None:
            refused = [(item, applied_.refused)]
        record_id = ("devices", item.update_id)
    else:
        assert item.channel is not None
        after = registry.consent(before, str(item.channel), opted_in=False)
        record_id = ("feedback", item.feedback_id)
    if after is not before:
        record = record._replace(devices=after)
    return record, DevicesChanged(registry.summary(after), *record_id), refused


def timer_due(model: Model, user: str, record: UserRecord, at: int, now_ms: int) -> Outcome | None:
    """``process`` of ``TimerDue(at)`` at ``now_ms``."""
    if record.timer != at:
        return None  # superseded by a later or earlier timer for this user
    state = record.segments.state
    # Evaluated at the instant the timer was set for, so a change carries the moment it
    # happened whatever the tick granularity; never before the user's newest input,
    # already evaluated at its own time, nor after now (an event stamped in the future
    # is counted, not awaited).
    when = from_ms(max(at, min(state.seen or at, now_ms)))
    result = segments.step(
        model.index, model.definitions, state, record.members, segments.Tick(), when
    )
    return _moved(model, user, record, record.offsets, result, journeys.Tick(), when, f"timer:{at}")


def redefined(
    model: Model, user: str, record: UserRecord, changed: frozenset[str], now: datetime
) -> Outcome | None:
    """``process`` of ``Redefined(changed)``."""
    result = segments.on_definitions_changed(
        model.index, model.definitions, record.segments.state, record.members, changed, now
    )
    if not result.changes and result.next_timer_ms == record.timer:
        return None
    cause = _definitions_cause(model.definitions, changed, record)
    return _moved(model, user, record, record.offsets, result, journeys.Tick(), now, cause)


def _moved(
    model: Model,
    user: str,
    record: UserRecord,
    offsets: Mapping[str, int],
    result: StepResult | None,
    journey_input: journeys.Input,
    now: datetime,
    cause: str = "",
    origin: tuple[str, int] | None = None,
) -> Outcome:
    """Move the user's journeys on ``journey_input`` after the segment ``result`` (None:
    the segments did not move) and build the new record and the outputs. ``cause`` names
    what made the membership changes (their identity: never an instant) and the journey
    rows they lead to; ``origin`` is the input record's topic letter and offset (for the
    explanation only: a replay by another path reads other offsets)."""
    timer: int | None
    if result is not None:
        part = tuple.__new__(SegmentPart, (result.state, UNREAD))
        members = result.memberships
        timer = result.next_timer_ms
        tags = result.state.tags
    else:
        # The stored parts as they are: a sweep touches every user of a partition.
        part = record.segments
        members = record.members
        timers = part.timers
        timer = min(timers.values()) if timers else None
        tags = part.tags
    journey_part = record.journeys
    commands = activity = tag_updates = profiles = _NONE
    opted_out: list[str] | None = None  # the journeys' remembered opt-outs, when changed
    # Most inputs concern no journey of a user who is in none: not even asked.
    if model.journeys and (
        journey_part is not None or journeys.may_start(model.catalog, journey_input)
    ):
        decoded = journey_part.state if journey_part is not None else None
        moved = journeys.step(
            model.catalog,
            decoded,
            journeys.Facts(user, tags, members, record.devices),
            journey_input,
            to_ms(now),
            result.changes if result is not None else (),
            cause,
            origin,
        )
        if moved.state is None:
            journey_part = None
        elif moved.state is not decoded:  # the same object: nothing changed
            journey_part = tuple.__new__(JourneyPart, (moved.state, UNREAD))
        if moved.state is not decoded:
            after = moved.state.opted_out if moved.state is not None else []
            if after != (decoded.opted_out if decoded is not None else []):
                opted_out = after
        if moved.next_due is not None:
            timer = moved.next_due if timer is None else min(timer, moved.next_due)
        commands, activity, tag_updates = moved.commands, moved.activity, moved.tag_updates
    new = tuple.__new__(UserRecord, (part, members, offsets, timer, journey_part, record.devices))
    if opted_out is not None or (result is not None and tags is not record.segments.tags):
        profiles = profile_outputs(user, record, new, tags, opted_out, now, cause)
    changes = _NONE
    if result is not None and result.changes:
        # The fields of schemas.memberships.MembershipChanged, built from values the
        # logic produced (a model per change cost more than the change itself).
        changes = []
        for change in result.changes:
            fields = {
                "segment_id": change.segment_id,
                "user_id": user,
                "change": change.kind,
                "at": change.at,
                "version": change.version,
                "cause": cause,
            }
            if change.values is not None:
                fields["values"] = change.values
            if origin is not None:
                fields["source"], fields["offset"] = origin
            changes.append(fields)
    return tuple.__new__(
        Outcome, (new, changes, commands, activity, tag_updates, profiles, _NOT_REFUSED)
    )


def _cause(item: UserInput) -> str:
    """An input's identity, the cause of the membership changes it makes."""
    if isinstance(item, Event):
        return f"e:{item.event_id}"
    if isinstance(item, TagUpdate):
        return f"t:{item.update_id}"
    if isinstance(item, DeviceUpdate):
        return f"v:{item.update_id}"
    return f"f:{item.feedback_id}"


def _definitions_cause(
    definitions: Mapping[str, SegmentDefinition], changed: Collection[str], record: UserRecord
) -> str:
    """The cause of changes a definition change makes to a user: the definitions
    changed, at their versions, and the user's state they met (its applied inputs and
    timer), so the same change met again (a replay, a restart's catch-up) is the same
    change, and a later one is another."""
    versions = sorted(
        (segment_id, definitions[segment_id].version if segment_id in definitions else None)
        for segment_id in changed
    )
    return "d:" + content_id(versions, record.offsets, record.timer)
