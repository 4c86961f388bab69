"""A testing harness for segments and journeys: definitions in, inputs and time in,
outputs and state out. No broker, no worker: it drives the user processor
(``engine.processor``) the way the runtime does, in simulated time.

    from engine.testing import Harness, segment

    engine = Harness(segments=[segment("buyers", 'E("Purchase", count >= 2, last 7 days)')])
    engine.event("u1", "Purchase")
    engine.event("u1", "Purchase")
    assert engine.members("buyers") == {"u1"}

Time moves only when told (``advance``): each user's timer fires at its own instant, as
the runtime fires it; with ``tick``, time moves in steps, each reaching the audience runs
that came due. Records are stored in their stored form (``engine.codec``) between two
inputs, as the runtime's table keeps them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from engine import codec
from engine import processor as core
from engine import sweeps as sweeping
from engine.journeys import logic as journeys
from engine.journeys.holdout import Holdout
from engine.journeys.schedule import Run
from engine.processor import Input, Model, Outcome, Record
from engine.record import SegmentPart, UserRecord
from engine.segments.counters import DEFAULT_HORIZON
from engine.sweeps import Pick
from engine.time import from_ms, to_ms
from schemas.commands import JourneyEntryRequest
from schemas.definitions import Definitions, JourneyAction
from schemas.devices import Device, DeviceOp, DeviceUpdate
from schemas.events import Event
from schemas.feedback import Feedback, FeedbackStatus
from schemas.journeys import JourneyDefinition
from schemas.presets import PresetDefinition
from schemas.segment_language import parse
from schemas.segments import SegmentDefinition
from schemas.tags import TagUpdate

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
"""The harness's start time unless given another (a Monday, 09:00 UTC)."""

SOURCES = {Event: "e", TagUpdate: "t", Feedback: "f", DeviceUpdate: "d"}

Definition = SegmentDefinition | JourneyDefinition | PresetDefinition


def segment(segment_id: str, condition: str, **fields: Any) -> SegmentDefinition:
    """A segment whose condition is written in the segmentation language."""
    return SegmentDefinition(
        id=segment_id, name=fields.pop("name", segment_id), condition=parse(condition), **fields
    )


class Harness:
    """Users' records and the definitions, in memory, moved by the user processor."""

    def __init__(
        self,
        segments: Iterable[SegmentDefinition] = (),
        journeys: Iterable[JourneyDefinition | Mapping[str, Any]] = (),
        presets: Iterable[PresetDefinition] = (),
        *,
        now: datetime = T0,
        horizon: timedelta = DEFAULT_HORIZON,
        launch: bool = True,
        schedules: bool = True,
        holdout: Holdout | None = None,
    ) -> None:
        """``launch``: launch the ``journeys`` given here; ``schedules``: audience runs
        start by themselves when time reaches them (off: only ``run`` starts one);
        ``holdout``: the global holdout (``Holdout(percent, salt)``)."""
        self.now = now
        self.registry = Definitions()
        self.model = Model.build({}, {}, horizon, holdout=holdout)
        self.schedules = schedules
        self.stored: dict[str, dict[str, Any]] = {}
        """User -> the stored form of the user's record."""
        self.changes: list[Record] = []
        """Membership changes, in order (fields of ``MembershipChanged``)."""
        self.commands: list[Record] = []
        """Send commands, in order (fields of ``SendCommand``)."""
        self.activity: list[Record] = []
        """Journey activity rows, in order (fields of ``JourneyActivity``)."""
        self.tag_updates: list[Record] = []
        """Tag updates made by update-profile steps (fields of ``TagUpdate``)."""
        self.refused: list[tuple[Any, str]] = []
        """Inputs the engine refused, and why (a device beyond the limit)."""
        self.profiles: list[Record] = []
        """Profile records, in order (``engine.profiles.profile_record``)."""
        self._offsets: Counter[str] = Counter()  # per source: one input record per input
        self._runs: dict[str, tuple[int, Run]] = {}  # entry -> (launch, last run started)
        self._statuses: dict[str, list[Any]] = {}  # journey -> [launch, status] swept
        self.define(*presets, *segments)
        for journey in journeys:
            definition = (
                journey
                if isinstance(journey, JourneyDefinition)
                else JourneyDefinition.model_validate(journey)
            )
            self.define(definition)
            if launch:
                self.act(definition.id, JourneyAction.LAUNCH)

    # --- definitions ------------------------------------------------------------------

    def define(self, *definitions: Definition) -> None:
        """Apply definitions, as the API does; a changed segment is re-evaluated for
        every user."""
        changed: set[str] = set()
        for definition in definitions:
            if isinstance(definition, SegmentDefinition):
                self.registry.fold(self.registry.prepare(definition, self.now))
                changed.add(definition.id)
            elif isinstance(definition, PresetDefinition):
                self.registry.fold(self.registry.prepare_preset(definition, self.now))
            else:
                self.registry.fold(self.registry.prepare_journey(definition, self.now))
        self._redefine(changed)

    def delete(self, segment_id: str) -> None:
        """Delete a segment: its members leave it."""
        self.registry.fold(self.registry.prepare_delete(segment_id, self.now))
        self._redefine({segment_id})

    def act(self, journey_id: str, action: JourneyAction | str, name: str | None = None) -> None:
        """Launch, pause, resume or stop a journey; a stop or a resume reaches the users
        inside, and a launch starts the audience runs due now."""
        event = self.registry.prepare_action(journey_id, JourneyAction(action), self.now, name)
        self.registry.fold(event)
        self.reload()
        statuses = sweeping.journey_statuses(self.model.catalog)
        for swept, input in sweeping.journey_sweeps(statuses, self._statuses):
            self.sweep(sweeping.inside(swept, input))
        self._statuses = statuses
        self._run_schedules()

    def reload(self) -> None:
        """Take the registry as it is now (changed directly), without re-evaluating
        anyone: as a worker that missed the changes while it was down."""
        self.model = self.model.with_segments(self.registry.segments).with_journeys(
            dict(self.registry.journeys)
        )

    def _redefine(self, changed: set[str]) -> None:
        self.reload()
        if changed:
            redefined = core.Redefined(frozenset(changed))
            for user in list(self.stored):
                self.process(user, redefined)

    # --- inputs -----------------------------------------------------------------------

    def send(
        self, item: Event | TagUpdate | Feedback | DeviceUpdate | JourneyEntryRequest
    ) -> Outcome | None:
        """One input, in a record of its own, processed at the current time."""
        if isinstance(item, JourneyEntryRequest):
            self._offsets["a"] += 1
            return self.process(item.user_id, core.Entered(item, self._offsets["a"]))
        source = SOURCES[type(item)]
        self._offsets[source] += 1
        return self.process(item.user_id, core.Received(item, source, self._offsets[source]))

    def event(
        self, user_id: str, name: str, at: datetime | None = None, **attributes: Any
    ) -> Outcome | None:
        """An event of the user's, stamped now (or ``at``)."""
        timestamp = at or self.now
        return self.send(
            Event(user_id=user_id, name=name, timestamp=timestamp, attributes=attributes)
        )

    def tags(self, user_id: str, op: str = "set", **tags: Any) -> Outcome | None:
        """A tag update (``op``: set, unset, increment, append, remove); a tag's name
        with spaces is written with underscores (``First_Name``)."""
        named = {name.replace("_", " "): value for name, value in tags.items()}
        update = TagUpdate.model_validate(
            {"user_id": user_id, "op": op, "tags": named, "timestamp": self.now}
        )
        return self.send(update)

    def register(self, user_id: str, device: Device | Mapping[str, Any]) -> Outcome | None:
        """Register one of the user's devices (a ``schemas.devices`` model or its JSON)."""
        return self.send(
            DeviceUpdate.model_validate(
                {"user_id": user_id, "op": "register", "device": device, "timestamp": self.now}
            )
        )

    def unregister(self, user_id: str, device_id: str, reason: str = "") -> Outcome | None:
        return self.send(
            DeviceUpdate(
                user_id=user_id,
                op=DeviceOp.UNREGISTER,
                device_id=device_id,
                reason=reason,
                timestamp=self.now,
            )
        )

    def consent(self, user_id: str, channel: str, opted_in: bool) -> Outcome | None:
        """The user opts in to (or out of) ``channel``."""
        op = DeviceOp.OPT_IN if opted_in else DeviceOp.OPT_OUT
        return self.send(
            DeviceUpdate.model_validate(
                {"user_id": user_id, "op": op, "channel": channel, "timestamp": self.now}
            )
        )

    def feedback(self, command: Mapping[str, Any], status: str = "opened") -> Outcome | None:
        """Feedback on a send command (one of ``commands``)."""
        feedback = Feedback(
            command_id=command["command_id"],
            user_id=command["user_id"],
            status=FeedbackStatus(status),
            timestamp=self.now,
            channel=command["channel"],
        )
        return self.send(feedback)

    def enter(self, journey_id: str, user_id: str, **properties: Any) -> Outcome | None:
        """A journey entry requested through the API."""
        return self.send(
            JourneyEntryRequest(
                journey_id=journey_id, user_id=user_id, at=self.now, properties=properties
            )
        )

    def run(self, journey_id: str, run: str = "now", due: datetime | None = None) -> None:
        """An audience run of ``journey_id`` reaches every user (the journey lets in its
        segment's members)."""
        input = journeys.AudienceRun(journey_id, run, to_ms(due) if due else None)
        self.sweep(lambda record: input)

    def sweep(self, pick: Pick) -> None:
        """Give every user the input ``pick`` chooses for them (None: none)."""
        for user in list(self.stored):
            input = pick(codec.decode(self.stored[user]))
            if input is not None:
                self.process(user, input)

    def process(self, user: str, input: Input, now: datetime | None = None) -> Outcome | None:
        """The user processor on one input: the record stored, the outputs collected."""
        outcome = core.process(
            self.model, user, codec.decode(self.stored.get(user)), input, now or self.now
        )
        if outcome is None:
            return None
        self.stored[user] = codec.encode(outcome.record)
        self.changes.extend(outcome.changes)
        self.commands.extend(outcome.commands)
        self.activity.extend(outcome.activity)
        self.tag_updates.extend(outcome.tag_updates)
        self.refused.extend(outcome.refused)
        self.profiles.extend(outcome.profiles)
        return outcome

    def given(
        self,
        user_id: str,
        tags: Mapping[str, Any] | None = None,
        members: Mapping[str, int] | None = None,
    ) -> UserRecord:
        """Set a user's tags and memberships directly, as a test's starting point
        (nothing is evaluated, no output is made)."""
        record = codec.decode(self.stored.get(user_id))
        if tags is not None:
            state = record.state.with_(tags=dict(tags))
            record = record._replace(segments=SegmentPart.of_state(state))
        if members is not None:
            record = record._replace(members=dict(members))
        self.stored[user_id] = codec.encode(record)
        return record

    # --- time -------------------------------------------------------------------------

    def advance(self, delta: timedelta, tick: timedelta | None = None) -> None:
        """Move time forward by ``delta``: every timer fires at its own instant (with
        ``tick``, at the first tick at or after it), and the audience runs due start."""
        self.advance_to(self.now + delta, tick)

    def advance_to(self, end: datetime, tick: timedelta | None = None) -> None:
        if tick is not None:
            while self.now + tick < end:
                self._at(self.now + tick)
        while True:
            due = self._next_due()
            if due is None or due[0] > to_ms(end):
                break
            at, user = due
            self.now = max(self.now, from_ms(at))
            self._run_schedules()
            self.process(user, core.TimerDue(at))
        self._at(end)

    def _at(self, moment: datetime) -> None:
        """A tick at ``moment``: the runs due start, then the timers due fire."""
        self.now = max(self.now, moment)
        self._run_schedules()
        while (due := self._next_due()) is not None and due[0] <= to_ms(self.now):
            self.process(due[1], core.TimerDue(due[0]))

    def _next_due(self) -> tuple[int, str] | None:
        dues = [
            (timer, user)
            for user, value in self.stored.items()
            if (timer := value.get(codec.TIMER)) is not None
        ]
        return min(dues) if dues else None

    def _run_schedules(self) -> None:
        if not self.schedules:
            return
        catalog = self.model.catalog

        def last_run(marker: str, launch: int) -> Run | None:
            last = self._runs.get(marker)
            return last[1] if last and last[0] == launch else None

        for due in sweeping.due_runs(catalog, last_run, self.now):
            self.sweep(sweeping.audience(catalog, due.journey_id, due.entry, due.run))
            self._runs[due.marker] = (due.launch, due.run)

    # --- reading ----------------------------------------------------------------------

    def record(self, user_id: str) -> UserRecord | None:
        """The user's record (None: not seen)."""
        stored = self.stored.get(user_id)
        return codec.decode(stored) if stored is not None else None

    def members(self, segment_id: str) -> set[str]:
        """The users in the segment now."""
        return {
            user
            for user, value in self.stored.items()
            if segment_id in value.get(codec.MEMBERS, {})
        }

    def timer(self, user_id: str) -> datetime | None:
        """When the user's timer fires next."""
        record = self.record(user_id)
        return from_ms(record.timer) if record and record.timer is not None else None

    def sent(self, user_id: str | None = None) -> list[str]:
        """The step of each send command, in order (of one user, or all)."""
        return [c["step"] for c in self.commands if user_id is None or c["user_id"] == user_id]

    def counts(self, journey_id: str | None = None) -> Counter[tuple[str, str]]:
        """(step, activity) -> rows, of one journey or all."""
        return Counter(
            (row["step"], row["activity"])
            for row in self.activity
            if journey_id is None or row["journey_id"] == journey_id
        )

    def rows(self, user_id: str, activity: str) -> list[Record]:
        """The user's activity rows of one kind (``entered``, ``dropped``, ...)."""
        return [r for r in self.activity if r["user_id"] == user_id and r["activity"] == activity]
