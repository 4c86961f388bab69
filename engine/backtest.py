"""Back-testing: what journeys would have done, replayed over archived inputs through the
user processor (``engine.processor``) in simulated time, in state of their own.

The runtime's rules, one user at a time (nothing in the processor looks at two users):

- Inputs (events, tag updates, feedback) are applied at their own timestamps, never
  before the user's newest event, as a simulated-clock worker applies them.
- The clock ticks on a grid (``tick``, aligned on the epoch). An input stamped before a
  tick is applied before it. At each tick, in this order: the feedback due by then is
  applied (each at its own instant), the audience runs due start, the timers due fire.
- Up to ``start`` nothing is emitted and the journeys are not launched: the inputs
  before it only build each user's state (segments, tags, counters) as at ``start``.
  The first tick is ``start``: the timers due by then fire, then the journeys are
  launched (launch ``launch``, at ``start``) and their runs due start.
- Delivery is diverted: a send command's feedback is the archived feedback of that
  command id when the archive has some (a command the live system made too), else what
  ``simulate`` decides (the simulator's deterministic draws). It is held until the
  first tick at or after its instant, as the delivery ledger holds it. Archived
  feedback for commands of the journeys under test is never an input of its own:
  those journeys' commands are the replay's.
- Tag updates made by update-profile steps are applied as inputs, as the tags topic
  brings them back; their archived copies (the same update id) are applied once.

Nothing here reads a clock or does I/O; the archive reader and the simulator are given.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from engine import processor as core
from engine import sweeps as sweeping
from engine.processor import Model, Outcome, Record, UserInput
from engine.record import EMPTY_RECORD, UserRecord
from engine.segments.counters import DEFAULT_HORIZON
from engine.time import from_ms, to_ms
from schemas.commands import parse_command_id
from schemas.definitions import (
    Definitions,
    JourneyAction,
    JourneyApplied,
    JourneyStatus,
    JourneyStatusChanged,
    SegmentApplied,
)
from schemas.events import Event
from schemas.feedback import Feedback
from schemas.journeys import JourneyDefinition
from schemas.segments import SegmentDefinition
from schemas.tags import TagUpdate

HOUR = timedelta(hours=1)

Simulate = Callable[[Record, int], Sequence[Feedback]]
"""A send command (the fields of ``SendCommand``) and the delivery's instant (ms: the
later of the command's own and the clock's) -> the feedback it gets, each stamped."""


def no_delivery(command: Record, now: int) -> Sequence[Feedback]:
    """A simulation in which no command gets any feedback."""
    return ()


@dataclass(frozen=True, slots=True)
class Timeline:
    """One user's archived inputs, in time order."""

    user: str
    inputs: Sequence[UserInput]


@dataclass(frozen=True, slots=True)
class ScheduledRun:
    at: int
    """The tick (ms) the run starts at."""
    due: sweeping.DueRun


# --- what a back-test reports ----------------------------------------------------------


@dataclass
class JourneyCounts:
    """One journey's figures over the back-test."""

    entries: int = 0
    users: set[str] = field(default_factory=set)
    goals: int = 0
    steps: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    """Step -> activity -> rows (as ``journey_step_stats`` counts them)."""
    silent: Counter[str] = field(default_factory=Counter)
    """Step -> sends that silent hours held back."""
    edges: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    """(from step, output, to step) -> users who went that way."""

    def total(self, activity: str) -> int:
        return sum(counts[activity] for counts in self.steps.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "entries": self.entries,
            "unique_users": len(self.users),
            "inside_now": self.entries - self.total("exited") - self.total("dropped"),
            "sent": self.total("sent"),
            "delivered": self.total("delivered"),
            "opened": self.total("opened"),
            "clicked": self.total("clicked"),
            "capped": self.total("capped"),
            "silent_hours": sum(self.silent.values()),
            "goals": self.goals,
            "goal_rate": self.goals / self.entries if self.entries else None,
            "steps": {
                step: {**dict(sorted(counts.items())), "silent_hours": self.silent[step]}
                for step, counts in sorted(self.steps.items())
            },
        }


@dataclass
class Report:
    """What the back-test did, over every user replayed."""

    start: datetime
    end: datetime
    users: int = 0
    inputs: Counter[str] = field(default_factory=Counter)
    """Inputs applied, by kind (events, tags, feedback), warm-up included."""
    journeys: dict[str, JourneyCounts] = field(default_factory=lambda: defaultdict(JourneyCounts))
    feedback: Counter[str] = field(default_factory=Counter)
    """Commands whose feedback came from the ``archive`` or the ``simulator``."""
    commands: list[Record] = field(default_factory=list)
    """The send commands made, in the order made (when kept)."""
    activity: list[Record] = field(default_factory=list)
    """The journey activity rows (when kept)."""
    members_at_start: Counter[str] = field(default_factory=Counter)
    """Segment -> members at ``start``."""
    size_changes: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    """Segment -> hour (ms) -> entered minus exited during that hour."""

    def sizes(self, segment_id: str, bucket: timedelta = HOUR) -> list[tuple[datetime, int]]:
        """The segment's members at the end of each ``bucket`` from ``start`` to ``end``."""
        step = to_ms(from_ms(0) + bucket)
        changes = self.size_changes.get(segment_id, Counter())
        first = to_ms(self.start)
        members = self.members_at_start[segment_id]
        found: list[tuple[datetime, int]] = []
        edge = first
        hours = sorted(changes)
        index = 0
        while edge < to_ms(self.end):
            edge = min(edge + step, to_ms(self.end))
            while index < len(hours) and hours[index] < edge:
                members += changes[hours[index]]
                index += 1
            found.append((from_ms(edge), members))
        return found

    def summary(self) -> dict[str, Any]:
        return {
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
            "users": self.users,
            "inputs": dict(sorted(self.inputs.items())),
            "feedback_from": dict(sorted(self.feedback.items())),
            "journeys": {
                journey_id: counts.as_dict() for journey_id, counts in sorted(self.journeys.items())
            },
        }


# --- the replay -----------------------------------------------------------------------


def registry(
    segments: Iterable[SegmentDefinition],
    journeys: Iterable[JourneyDefinition],
    at: datetime,
    launch: int = 1,
) -> Definitions:
    """The definitions as a registry that launched ``journeys`` at ``at``, each at its
    own version (a definition from a file, unversioned, as a first apply versions it:
    1)."""
    definitions = Definitions()
    for segment in segments:
        if not segment.version:
            segment = segment.model_copy(update={"version": 1})
        definitions.fold(SegmentApplied(definition=segment, at=at))
    for journey in journeys:
        if not journey.version:
            journey = journey.model_copy(update={"version": 1})
        definitions.fold(JourneyApplied(definition=journey, at=at))
        definitions.fold(
            JourneyStatusChanged(
                journey_id=journey.id,
                action=JourneyAction.LAUNCH,
                status=JourneyStatus.LAUNCHED,
                name=journey.name,
                launch=launch,
                launched_at=at,
                at=at,
            )
        )
    return definitions


def grid_after(moment: int, tick: int) -> int:
    """The first tick at or after ``moment`` (ms)."""
    return -(-moment // tick) * tick


class Backtest:
    """Journeys replayed over archived inputs, one user at a time."""

    def __init__(
        self,
        segments: Sequence[SegmentDefinition],
        journeys: Sequence[JourneyDefinition],
        start: datetime,
        end: datetime,
        *,
        tick: timedelta = HOUR,
        simulate: Simulate = no_delivery,
        launch: int = 1,
        horizon: timedelta = DEFAULT_HORIZON,
        keep: bool = False,
    ) -> None:
        """``keep``: keep every command and activity row in the report (the
        differential test compares them; a large back-test only counts)."""
        if end <= start:
            raise ValueError("the back-test ends before it starts")
        self.start_ms, self.end_ms = to_ms(start), to_ms(end)
        self.tick = int(tick / timedelta(milliseconds=1))
        if self.tick <= 0:
            raise ValueError("the tick must be positive")
        if self.start_ms % self.tick:
            raise ValueError(f"--from must fall on a tick (every {tick})")
        self.simulate = simulate
        self.keep = keep
        definitions = registry(segments, journeys, start, launch)
        self.before = Model.build(definitions.segments, {}, horizon)
        self.after = Model.build(definitions.segments, dict(definitions.journeys), horizon)
        self.tested = frozenset(journey.id for journey in journeys)
        self.silent_hours = any(journey.settings.silent_hours for journey in journeys)
        self.runs = self._schedule()
        self.report = Report(start, end)

    def _schedule(self) -> list[ScheduledRun]:
        """The audience runs that start, tick by tick, from ``start`` to ``end``: the
        same for every user (the user's own zone and membership decide the rest)."""
        catalog = self.after.catalog
        last: dict[str, tuple[int, Any]] = {}

        def last_run(marker: str, launch: int) -> Any:
            found = last.get(marker)
            return found[1] if found and found[0] == launch else None

        found: list[ScheduledRun] = []
        for at in range(self.start_ms, self.end_ms + 1, self.tick):
            for due in sweeping.due_runs(catalog, last_run, from_ms(at)):
                found.append(ScheduledRun(at, due))
                last[due.marker] = (due.launch, due.run)
        return found

    def run(
        self, timelines: Iterable[Timeline], progress: Callable[[int], None] | None = None
    ) -> Report:
        """Replay every user; ``progress`` is told the inputs of each user done."""
        for timeline in timelines:
            self.user(timeline)
            if progress is not None:
                progress(len(timeline.inputs))
        return self.report

    def user(self, timeline: Timeline) -> UserRecord:
        """Replay one user from the archive's first input to ``end``; returns the record
        at the end."""
        return _UserReplay(self, timeline).run()


class _UserReplay:
    """One user's replay: the loop of inputs and ticks."""

    def __init__(self, test: Backtest, timeline: Timeline) -> None:
        self.test = test
        self.user = timeline.user
        self.record = EMPTY_RECORD
        self.model = test.before
        self.emitting = False
        self.clock = -(2**62)  # the last tick applied
        self.pending: list[tuple[int, int, Feedback]] = []  # (due, order, feedback)
        self.order = 0
        self.offsets: Counter[str] = Counter()
        self.silent: set[tuple[str, str, str, int]] = set()
        self.tag_ids: set[str] = set()
        inputs: list[UserInput] = []
        archived: dict[str, list[Feedback]] = defaultdict(list)
        for item in timeline.inputs:
            if isinstance(item, Feedback):
                ref = parse_command_id(item.command_id)
                if ref is not None and ref.journey in test.tested:
                    archived[item.command_id].append(item)
                    continue
            inputs.append(item)
        self.inputs = inputs
        self.archived = archived

    def run(self) -> UserRecord:
        test, inputs = self.test, self.inputs
        tick, start, end = test.tick, test.start_ms, test.end_ms
        runs = test.runs
        run_index = 0
        index = 0
        count = len(inputs)
        times = [to_ms(item.timestamp) for item in inputs]
        report = test.report
        report.users += 1
        while True:
            # The next tick with work for this user.
            after = self.clock + tick
            due = start if self.clock < start else None
            timer = self.record.timer
            if timer is not None and self.clock >= start:
                # Before ``start`` no clock ticks: the timers due fire at its first tick.
                due = _earliest(due, max(grid_after(timer, tick), after))
            if self.pending:
                due = _earliest(due, max(grid_after(self.pending[0][0], tick), after))
            if run_index < len(runs):
                due = _earliest(due, runs[run_index].at)
            if index < count:
                at = times[index]
                if at < end and (due is None or at < due):
                    index += 1
                    self._input(inputs[index - 1])
                    continue
            if due is None or due > end:
                return self.record
            # The tick ``due``.
            self.clock = due
            if due == start:
                self._timers(due)
                self.model = test.after
                self.emitting = True
                report.members_at_start.update(self.record.members.keys())
            self._release(due)
            while run_index < len(runs) and runs[run_index].at <= due:
                self._run(runs[run_index])
                run_index += 1
            self._timers(due)

    # --- the steps ------------------------------------------------------------------

    def _input(self, item: UserInput) -> None:
        if isinstance(item, Event):
            source, kind = "e", "events"
        elif isinstance(item, TagUpdate):
            if item.update_id in self.tag_ids:
                return  # made by the replay already
            self.tag_ids.add(item.update_id)
            source, kind = "t", "tags"
        else:
            source, kind = "f", "feedback"
        self.test.report.inputs[kind] += 1
        self._apply(item, source)

    def _apply(self, item: UserInput, source: str) -> None:
        self.offsets[source] += 1
        outcome = core.received(
            self.model,
            self.user,
            self.record,
            item,
            source,
            self.offsets[source],
            item.timestamp,
            True,
        )
        self._took(outcome)

    def _release(self, now: int) -> None:
        pending = self.pending
        while pending and pending[0][0] <= now:
            _, _, feedback = heapq.heappop(pending)
            self._apply(feedback, "f")

    def _run(self, scheduled: ScheduledRun) -> None:
        due = scheduled.due
        catalog = self.model.catalog
        pick = sweeping.audience(catalog, due.journey_id, due.entry, due.run)
        input = pick(self.record)
        if input is not None:
            outcome = core.process(self.model, self.user, self.record, input, from_ms(scheduled.at))
            if outcome is not None:
                self._took(outcome)

    def _timers(self, now: int) -> None:
        while (timer := self.record.timer) is not None and timer <= now:
            outcome = core.timer_due(self.model, self.user, self.record, timer, now)
            if outcome is None:
                return
            self._took(outcome)

    def _took(self, outcome: Outcome) -> None:
        self.record = outcome.record
        if not self.emitting:
            return
        report = self.test.report
        for change in outcome.changes:
            at = to_ms(change["at"])
            hour = at - at % 3_600_000
            delta = 1 if change["change"] == "entered" else -1
            report.size_changes[change["segment_id"]][hour] += delta
        tested = self.test.tested
        rows = outcome.activity
        if any(row["journey_id"] not in tested for row in rows):
            # Feedback on another journey's command (an input here) is recorded against
            # that journey: not the back-test's to count.
            rows = [row for row in rows if row["journey_id"] in tested]
        for row in rows:
            counts = report.journeys[row["journey_id"]]
            activity = row["activity"]
            if activity == "entered":
                detail = row["detail"]
                if detail == "journey":
                    counts.entries += 1
                    counts.users.add(self.user)
                elif "." in detail:
                    source, _, output = detail.partition(".")
                    counts.edges[(source, output, row["step"])] += 1
            elif activity == "goal":
                counts.goals += 1
            counts.steps[row["step"]][activity] += 1
        if self.test.keep:
            report.activity.extend(rows)
            report.commands.extend(outcome.commands)
        for command in outcome.commands:
            self._deliver(command)
        for update in outcome.tag_updates:
            item = TagUpdate.model_validate(update)
            if item.update_id not in self.tag_ids:
                self.tag_ids.add(item.update_id)
                self._apply(item, "t")
        if self.test.silent_hours:
            self._silent()

    def _deliver(self, command: Record) -> None:
        command_id = command["command_id"]
        archived = self.archived.get(command_id)
        report = self.test.report
        if archived is not None:
            report.feedback["archive"] += 1
            feedback: Sequence[Feedback] = archived
        else:
            report.feedback["simulator"] += 1
            now = max(self.clock, to_ms(command["at"]))
            feedback = self.test.simulate(command, now)
        for item in feedback:
            self.order += 1
            heapq.heappush(self.pending, (to_ms(item.timestamp), self.order, item))

    def _silent(self) -> None:
        """Count the sends silent hours hold back (a visit that starts waiting for
        them: no activity row says so)."""
        part = self.record.journeys
        state = part.state if part is not None else None
        if state is None:
            return
        for journey_id, visit in state.visits.items():
            if visit.awaiting == "silent":
                key = (journey_id, visit.run, visit.node, visit.steps)
                if key not in self.silent:
                    self.silent.add(key)
                    self.test.report.journeys[journey_id].silent[visit.node] += 1


def _earliest(current: int | None, candidate: int) -> int:
    return candidate if current is None or candidate < current else current


def split_by_user(items: Iterable[UserInput]) -> list[Timeline]:
    """Inputs in any order as timelines (users in order of their ids, each user's
    inputs by time, ties in the order given)."""
    by_user: dict[str, list[UserInput]] = defaultdict(list)
    for item in items:
        by_user[item.user_id].append(item)
    return [
        Timeline(user, sorted(found, key=lambda item: item.timestamp))
        for user, found in sorted(by_user.items())
    ]


def stats_of(activity: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], Counter[str]]:
    """(journey, step) -> activity -> rows: the per-step statistics of activity rows."""
    found: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for row in activity:
        found[(row["journey_id"], row["step"])][row["activity"]] += 1
    return found
