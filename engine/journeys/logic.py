"""The journey engine's one entry point: move one user through the journeys on one
input, and say what to send, what happened, and when to look again.

A user's journey state is plain JSON, stored with their segment state:

- ``in``: journey id -> the visit in progress (at most one per journey): version
  ``v``, run ``r``, node ``n``, steps taken ``s``, due instant ``d`` (ms), what is
  awaited ``w`` (``split`` / ``delay`` / ``event`` / ``silent`` / ``paused``), the
  command awaiting an open ``c``, an open seen while paused ``o`` (ms), the branch an
  event took while paused ``e`` (``[branch, ms]``), entry properties ``p``, entry
  kind ``k``;
- ``h``: journey id -> ``[last run, last entry (ms), entries]``, for re-entry rules;
- ``pe``: journey id -> ``[run, due (ms)]``, audience entries waiting for the user's
  local time;
- ``x``: instants of recent sends of every journey (frequency caps);
- ``u``: channels the user opted out of.

Before an input is applied, visits whose time has come move on at their own due
instant, so a late timer never lets a late event or open win a race it lost. Nothing
here reads a clock or does I/O: ``now`` is given, outputs are returned.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from pydantic_core import to_jsonable_python

from engine.journeys.catalog import Catalog, matches
from engine.journeys.schedule import delay_end, silent_until, user_zone
from engine.segments.logic import MembershipChange
from engine.time import from_ms, to_ms
from schemas.commands import WEBHOOK, Activity, JourneyEntryRequest, command_id, parse_command_id
from schemas.definitions import JourneyStatus
from schemas.events import Event
from schemas.feedback import Feedback, FeedbackStatus
from schemas.identity import content_id
from schemas.journey_nodes import (
    ADDRESS_TAGS,
    OPT_OUT_TAG,
    ABSplitNode,
    DelayNode,
    ExitNode,
    MessageNode,
    ReachabilityNode,
    SegmentSplitNode,
    UpdateProfileNode,
    WaitForEventNode,
    WebhookNode,
)
from schemas.journeys import ApiEntry, AudienceEntry, JourneyDefinition, TriggerEntry

JSON = Any
State = dict[str, Any]
MAX_STEPS = 1000
"""Steps one visit may take in one call: the graph check refuses loops that do not
wait, this only bounds the damage of a bug."""


# AudienceRun and Facts: NamedTuples, built per user of a launch, where a frozen
# dataclass's __init__ costs several times a tuple's.
class AudienceRun(NamedTuple):
    """A run of an audience entry reached this user: enter if in the segment (at
    ``due``, the run's instant in the user's zone, when later than now)."""

    journey_id: str
    run: str
    due: int | None = None


@dataclass(frozen=True, slots=True)
class Stopped:
    """The journey stopped: everyone inside drops out."""

    journey_id: str


@dataclass(frozen=True, slots=True)
class Tick:
    """Time alone: due visits move on (also after a resume)."""


Input = Event | Feedback | JourneyEntryRequest | AudienceRun | Stopped | Tick


class Facts(NamedTuple):
    """What the segment engine knows of the user after the same input."""

    user_id: str
    tags: Mapping[str, JSON]
    members: Mapping[str, int]


@dataclass(slots=True)
class JourneyResult:
    state: State | None
    """None when the user has no journey state at all."""
    commands: list[dict[str, Any]] = field(default_factory=list)
    """Fields of ``schemas.commands.SendCommand``."""
    activity: list[dict[str, Any]] = field(default_factory=list)
    """Fields of ``schemas.commands.JourneyActivity``."""
    tag_updates: list[dict[str, Any]] = field(default_factory=list)
    """Fields of ``schemas.tags.TagUpdate``, from update-profile steps."""
    next_due: int | None = None
    """When to call again with a ``Tick`` (ms)."""


def step(
    catalog: Catalog,
    state: State | None,
    facts: Facts,
    input: Input,
    now: int,
    changes: Sequence[MembershipChange] = (),
) -> JourneyResult:
    """Apply due timers up to ``now``, the membership ``changes`` the same input made,
    then ``input`` itself."""
    if state is None:
        # The hot path: most inputs concern no journey of a user who is in none.
        if not may_start(catalog, input):
            return JourneyResult(None)
        state = {}
    else:
        state = _copy(state)
    mover = _Mover(catalog, state, facts, _cause(input))
    mover.drop_stale(now)
    mover.due(now)
    if changes:
        mover.left_segments(changes, now)
    if isinstance(input, Event):
        mover.event(input, now)
    elif isinstance(input, Feedback):
        mover.feedback(input, now)
    elif isinstance(input, JourneyEntryRequest):
        mover.api_entry(input, now)
    elif isinstance(input, AudienceRun):
        mover.audience(input, now)
    elif isinstance(input, Stopped):
        mover.stopped(input.journey_id, now)
    result = mover.result
    result.state = _trimmed(state, now)
    result.next_due = next_due(catalog, result.state)
    return result


def _cause(input: Input) -> str:
    """The identity of the input, for the rows it makes directly (see
    ``JourneyActivity.cause``): never an instant, so a replay makes the same rows."""
    if isinstance(input, Event):
        return f"e:{input.event_id}"
    if isinstance(input, Feedback):
        return f"f:{input.feedback_id}"
    if isinstance(input, JourneyEntryRequest):
        return f"a:{input.entry_id}"
    if isinstance(input, AudienceRun):
        return f"r:{input.run}"
    return ""


def next_due(catalog: Catalog, state: State | None) -> int | None:
    """The earliest instant a visit or a waiting entry of ``state`` moves (visits of
    paused journeys wait for the resume)."""
    if not state:
        return None
    dues = [
        _moves_at(visit)
        for journey_id, visit in state.get("in", {}).items()
        if visit.get("d") is not None and catalog.status(journey_id) is not JourneyStatus.PAUSED
    ]
    dues.extend(due for _, due in state.get("pe", {}).values())
    return min(dues) if dues else None


def inside(state: State | None) -> Mapping[str, Mapping[str, Any]]:
    """The user's visits in progress, by journey id."""
    return state.get("in", {}) if state else {}


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


def _copy(state: State) -> State:
    copied = dict(state)
    if "in" in copied:
        copied["in"] = {key: dict(visit) for key, visit in copied["in"].items()}
    for key in ("h", "pe"):
        if key in copied:
            copied[key] = dict(copied[key])
    return copied


def _trimmed(state: State, now: int) -> State | None:
    for key in ("in", "h", "pe", "x", "u"):
        if key in state and not state[key]:
            del state[key]
    return state or None


def _moves_at(visit: Mapping[str, Any]) -> int:
    """When a waiting visit moves: its due instant, or an open or event seen earlier
    while its journey was paused."""
    due: int = visit["d"]
    if "o" in visit:
        due = min(due, visit["o"])
    if "e" in visit:
        due = min(due, visit["e"][1])
    return due


def _bucket(user: str, journey: str, node: str) -> int:
    """0..99, stable per user and split step."""
    digest = hashlib.blake2b(f"{journey}\x00{node}\x00{user}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 100


_FEEDBACK_ACTIVITY = {
    FeedbackStatus.DELIVERED: Activity.DELIVERED,
    FeedbackStatus.OPENED: Activity.OPENED,
    FeedbackStatus.CLICKED: Activity.CLICKED,
    FeedbackStatus.BOUNCED: Activity.FAILED,
    FeedbackStatus.FAILED: Activity.FAILED,
}


class _Mover:
    """Moves one user's visits; collects what to emit."""

    def __init__(self, catalog: Catalog, state: State, facts: Facts, cause: str = "") -> None:
        self.catalog = catalog
        self.state = state
        self.facts = facts
        self.cause = cause
        self.result = JourneyResult(state)

    # --- inputs -----------------------------------------------------------------------

    def drop_stale(self, now: int) -> None:
        """Visits of a journey stopped (or stopped and launched again) while this user's
        state was not swept, e.g. on a worker that was down: they end here. A catalog
        not loaded yet knows no journey: nothing is stale then."""
        if ("in" not in self.state and "pe" not in self.state) or not self.catalog.loaded:
            return
        for journey_id, visit in list(self.state.get("in", {}).items()):
            if not self._current(journey_id, visit["r"]):
                self._leave(journey_id, visit, Activity.DROPPED, "journey stopped", now)
        for journey_id in list(self.state.get("pe", {})):
            if self.catalog.status(journey_id) is not JourneyStatus.LAUNCHED:
                del self.state["pe"][journey_id]

    def _current(self, journey_id: str, run: str) -> bool:
        status = self.catalog.status(journey_id)
        if status is None or status is JourneyStatus.STOPPED:
            return False
        return run.split("-", 1)[0] == str(self.catalog.launch(journey_id))

    def due(self, now: int) -> None:
        """Move every visit and waiting entry whose instant has come, at that instant."""
        if "in" not in self.state and "pe" not in self.state:
            return
        while True:
            pending = [
                (due, 0, journey_id)
                for journey_id, (_, due) in self.state.get("pe", {}).items()
                if due <= now
            ]
            # An open or event seen while the journey was paused counts once it runs again.
            for journey_id, visit in self.state.get("in", {}).items():
                if visit.get("d") is None:
                    continue
                at = _moves_at(visit)
                if at <= now and self.catalog.status(journey_id) is not JourneyStatus.PAUSED:
                    pending.append((at, 1, journey_id))
            if not pending:
                return
            at, kind, journey_id = min(pending)
            if kind == 0:
                run, _ = self.state["pe"].pop(journey_id)
                self._enter_audience(journey_id, run, at)
            else:
                self._timeout(journey_id, at)

    def left_segments(self, changes: Sequence[MembershipChange], now: int) -> None:
        left = {change.segment_id for change in changes if change.kind == "exited"}
        if not left:
            return
        for journey_id, visit in list(self.state.get("in", {}).items()):
            definition = self.catalog.version(journey_id, visit["v"])
            if (
                definition is None
                or visit.get("k") != "audience"
                or not definition.settings.exit_when_leaving_segment
            ):
                continue
            segments = {
                entry.segment for entry in definition.entries if isinstance(entry, AudienceEntry)
            }
            if segments & left:
                self._leave(journey_id, visit, Activity.DROPPED, "left segment", now)

    def event(self, event: Event, now: int) -> None:
        visits = self.state.get("in", {})
        for journey_id, visit in list(visits.items()):
            definition = self.catalog.version(journey_id, visit["v"])
            if definition is None:
                continue
            for goal in definition.settings.goals:
                if matches(goal.match, event):
                    self._activity(
                        journey_id, visit, visit["n"], Activity.GOAL, now, goal.name, self.cause
                    )
                    if goal.exits:
                        self._leave(journey_id, visit, Activity.EXITED, f"goal {goal.name}", now)
                        break
            else:
                node = definition.node(visit["n"])
                if isinstance(node, WaitForEventNode) and visit.get("w") == "event":
                    for branch in node.branches:
                        if any(matches(match, event) for match in branch.events):
                            if self.catalog.status(journey_id) is JourneyStatus.PAUSED:
                                # A paused journey does not move: the first branch
                                # taken is decided on resume, at the event's instant.
                                visit.setdefault("e", [branch.name, now])
                            else:
                                self._take(journey_id, visit, definition, branch.name, now)
                            break
        entered: set[str] = set()  # several matching entries still make one entry
        for journey_id, entry in self.catalog.triggers.get(event.name, ()):
            if journey_id not in entered and matches(entry.match, event):
                entered.add(journey_id)
                definition = self.catalog.open_for(journey_id, TriggerEntry)
                if definition is not None:
                    properties = to_jsonable_python(event.attributes)
                    self._enter(definition, None, "trigger", properties, now)

    def feedback(self, feedback: Feedback, now: int) -> None:
        if feedback.status is FeedbackStatus.UNSUBSCRIBED and feedback.channel:
            opted = self.state.setdefault("u", [])
            if feedback.channel not in opted:
                opted.append(feedback.channel)
        ref = parse_command_id(feedback.command_id)
        if ref is None:
            return
        activity = _FEEDBACK_ACTIVITY.get(feedback.status)
        if activity is not None:
            self.result.activity.append(
                self._row(
                    ref.journey,
                    ref.version,
                    ref.run,
                    ref.node,
                    activity,
                    now,
                    feedback.reason or "",
                    feedback.command_id,
                    cause=self.cause,
                )
            )
        if feedback.status not in (FeedbackStatus.OPENED, FeedbackStatus.CLICKED):
            return
        visit = self.state.get("in", {}).get(ref.journey)
        if visit is None or visit.get("c") != feedback.command_id or visit.get("w") != "split":
            return  # the wait is over (or this is another visit's message)
        if self.catalog.status(ref.journey) is JourneyStatus.PAUSED:
            visit.setdefault("o", now)  # decided on resume
            return
        definition = self.catalog.version(ref.journey, visit["v"])
        if definition is not None:
            self._take(ref.journey, visit, definition, "opened", now)

    def api_entry(self, request: JourneyEntryRequest, now: int) -> None:
        definition = self.catalog.open_for(request.journey_id, ApiEntry)
        if definition is not None:
            self._enter(definition, None, "api", dict(request.properties), now)

    def audience(self, run: AudienceRun, now: int) -> None:
        if run.due is not None and run.due > now:
            # Enter at the run's local time; membership is checked then.
            self.state.setdefault("pe", {})[run.journey_id] = [run.run, run.due]
            return
        self._enter_audience(run.journey_id, run.run, now)

    def stopped(self, journey_id: str, now: int) -> None:
        self.state.get("pe", {}).pop(journey_id, None)
        visit = self.state.get("in", {}).get(journey_id)
        if visit is not None:
            self._leave(journey_id, visit, Activity.DROPPED, "journey stopped", now)

    # --- entering ---------------------------------------------------------------------

    def _enter_audience(self, journey_id: str, run: str, now: int) -> None:
        members = self.facts.members
        for segment in self.catalog.audiences.get(journey_id, ()):
            if segment in members:
                definition = self.catalog.open.get(journey_id)
                if definition is not None:
                    self._enter(definition, run, "audience", {}, now)
                return

    def _enter(
        self,
        definition: JourneyDefinition,
        run: str | None,
        kind: str,
        properties: dict[str, Any],
        now: int,
    ) -> None:
        journey_id = definition.id
        history = self.state.get("h", {}).get(journey_id)
        last_run, last_at, entries = history if history else (None, 0, 0)
        launch = self.catalog.launch(journey_id)
        # Audience runs are named by the schedule; trigger and API entries by the
        # user's own count, so each entry's commands get their own ids.
        run = f"{launch}-{run}" if run is not None else f"{launch}-e{entries + 1}"
        reason = None
        if journey_id in self.state.get("in", {}):
            reason = "inside"
        elif history is not None:
            rule = definition.settings.reentry
            if rule.kind == "never" or last_run == run:
                reason = "already entered"
            elif rule.kind == "after" and rule.after and now - last_at < rule.after.ms:
                reason = "re-entry too soon"
        if reason is not None:
            if last_run != run:  # the same run's second entry is not news
                self.result.activity.append(
                    self._row(
                        journey_id,
                        definition.version,
                        run,
                        definition.start,
                        Activity.SKIPPED,
                        now,
                        reason,
                        cause=self.cause,
                    )
                )
            return
        self.state.setdefault("h", {})[journey_id] = [run, now, entries + 1]
        visit: dict[str, Any] = {"v": definition.version, "r": run, "n": definition.start, "s": 0}
        if properties:
            visit["p"] = properties
        visit["k"] = kind
        self.state.setdefault("in", {})[journey_id] = visit
        # One row says both: entered the journey, and its first step.
        self._activity(journey_id, visit, definition.start, Activity.ENTERED, now, "journey")
        self._arrive(journey_id, visit, definition, now, announced=True)

    # --- moving -----------------------------------------------------------------------

    def _timeout(self, journey_id: str, at: int) -> None:
        visit = self.state["in"][journey_id]
        definition = self.catalog.version(journey_id, visit["v"])
        if definition is None:
            self._leave(journey_id, visit, Activity.DROPPED, "version gone", at)
            return
        waiting = visit.get("w")
        node = definition.node(visit["n"])
        end, visit["d"] = visit["d"], None
        # What was seen while paused wins if it came before the wait ended (as when the
        # journey runs: at the very end, the timeout is first).
        opened, seen = visit.pop("o", None), visit.pop("e", None)
        if waiting == "split":
            if opened is not None and opened < end:
                self._take(journey_id, visit, definition, "opened", at)
            else:
                self._activity(journey_id, visit, node.id, Activity.NOT_OPENED, at)
                self._take(journey_id, visit, definition, "not_opened", at)
        elif waiting == "event":
            if seen is not None and seen[1] < end:
                self._take(journey_id, visit, definition, seen[0], at)
            else:
                self._take(journey_id, visit, definition, "timeout", at)
        elif waiting == "delay":
            self._take(journey_id, visit, definition, "next", at)
        else:  # silent hours over (or a resumed hold): try the step again
            self._arrive(journey_id, visit, definition, at, again=True)

    def _take(
        self,
        journey_id: str,
        visit: dict[str, Any],
        definition: JourneyDefinition,
        output: str,
        now: int,
    ) -> None:
        node = definition.node(visit["n"])
        for key in ("w", "c", "o", "e"):
            visit.pop(key, None)
        visit["d"] = None
        visit["n"] = node.next[output]
        self._arrive(journey_id, visit, definition, now, via=f"{node.id}.{output}")

    def _arrive(
        self,
        journey_id: str,
        visit: dict[str, Any],
        definition: JourneyDefinition,
        now: int,
        again: bool = False,
        announced: bool = False,
        via: str = "",
    ) -> None:
        """Run the node the visit is at, and the ones after it, until one waits
        (``again``: the node was entered before; ``announced``: its entry row is
        written; ``via``: the edge that led here, ``node.output``, which the entry row
        names so that edges can be counted)."""
        for _ in range(MAX_STEPS):
            node = definition.node(visit["n"])
            if not again:
                visit["s"] += 1
                if not announced:
                    self._activity(journey_id, visit, node.id, Activity.ENTERED, now, via)
            again = announced = False
            output: str | None
            if isinstance(node, ExitNode):
                self._leave(journey_id, visit, Activity.EXITED, "exit", now)
                return
            if isinstance(node, MessageNode):
                output = self._message(journey_id, visit, definition, node, now)
            elif isinstance(node, DelayNode):
                zone = self._zone(definition, node.timezone)
                end = to_ms(delay_end(node, from_ms(now), zone))
                output = self._wait(visit, "delay", end, now, "next")
            elif isinstance(node, WaitForEventNode):
                output = self._wait(visit, "event", now + node.timeout.ms, now, "timeout")
            elif isinstance(node, SegmentSplitNode):
                output = "in" if node.segment in self.facts.members else "not_in"
            elif isinstance(node, ABSplitNode):
                bucket = _bucket(self.facts.user_id, journey_id, node.id)
                output = node.variants[-1].name
                for variant in node.variants:
                    if bucket < variant.percent:
                        output = variant.name
                        break
                    bucket -= variant.percent
            elif isinstance(node, ReachabilityNode):
                output = "reachable" if self._reachable(node.channel) else "unreachable"
            elif isinstance(node, UpdateProfileNode):
                self._update_profile(visit, definition, node, now)
                output = "next"
            else:
                assert isinstance(node, WebhookNode)
                self._command(visit, definition, node.id, WEBHOOK, None, now, url=node.url)
                output = "next"
            if output is None:
                return  # waiting
            for key in ("w", "c", "o", "e"):
                visit.pop(key, None)
            visit["n"] = node.next[output]
            via = f"{node.id}.{output}"
        self._leave(journey_id, visit, Activity.DROPPED, "too many steps", now)

    def _wait(
        self, visit: dict[str, Any], kind: str, until: int, now: int, output: str
    ) -> str | None:
        if until <= now:
            return output
        visit["w"] = kind
        visit["d"] = until
        return None

    def _message(
        self,
        journey_id: str,
        visit: dict[str, Any],
        definition: JourneyDefinition,
        node: MessageNode,
        now: int,
    ) -> str | None:
        settings = definition.settings
        skip = "not_opened" if node.split_after else "next"
        if settings.silent_hours:
            zone = self._zone(definition, "user")
            end = silent_until(settings.silent_hours, node.channel, from_ms(now), zone)
            if end is not None:
                visit["w"] = "silent"
                visit["d"] = to_ms(end)
                return None
        if not self._reachable(node.channel, address=False):
            self._activity(journey_id, visit, node.id, Activity.SUPPRESSED, now, "opted out")
            return skip
        tag = ADDRESS_TAGS.get(node.channel)
        if tag is not None and self._address(node.channel) is None:
            # No command a provider could only refuse: the user goes on as if not opened.
            self._activity(journey_id, visit, node.id, Activity.UNREACHABLE, now, f"no {tag}")
            return skip
        cap = settings.frequency_cap
        sends = [at for at in self.state.get("x", []) if at > now - _CAP_HORIZON]
        if cap is not None and sum(1 for at in sends if at > now - cap.period.ms) >= cap.messages:
            self._activity(journey_id, visit, node.id, Activity.CAPPED, now)
            return skip
        sends.append(now)
        self.state["x"] = sends[-_CAP_SENDS:]
        command = self._command(visit, definition, node.id, node.channel, node.preset, now)
        if node.split_after is None:
            return "next"
        visit["w"] = "split"
        visit["c"] = command
        visit["d"] = now + node.split_after.ms
        return None

    def _command(
        self,
        visit: dict[str, Any],
        definition: JourneyDefinition,
        node: str,
        channel: str,
        preset: str | None,
        now: int,
        url: str | None = None,
    ) -> str:
        user = self.facts.user_id
        identity = command_id(definition.id, visit["v"], visit["r"], user, node, visit["s"])
        self.result.commands.append(
            {
                "command_id": identity,
                "user_id": user,
                "channel": str(channel),
                "preset": preset,
                "url": url,
                "journey_id": definition.id,
                "journey_version": visit["v"],
                "run": visit["r"],
                "step": node,
                "visit": visit["s"],
                "properties": visit.get("p", {}),
                "at": _instant(now),
                "address": self._address(channel),
                "tags": dict(self.facts.tags),
            }
        )
        self.result.activity.append(
            self._row(
                definition.id,
                visit["v"],
                visit["r"],
                node,
                Activity.SENT,
                now,
                "",
                identity,
                visit["s"],
            )
        )
        return identity

    def _update_profile(
        self,
        visit: dict[str, Any],
        definition: JourneyDefinition,
        node: UpdateProfileNode,
        now: int,
    ) -> None:
        user = self.facts.user_id
        tags = to_jsonable_python(node.tags)
        self.result.tag_updates.append(
            {
                "user_id": user,
                "op": "set",
                "tags": tags,
                "timestamp": from_ms(now),
                "update_id": content_id(
                    "journey-tags", definition.id, visit["v"], visit["r"], user, node.id, visit["s"]
                ),
            }
        )

    def _address(self, channel: str) -> str | None:
        tag = ADDRESS_TAGS.get(channel)  # type: ignore[call-overload]
        value = self.facts.tags.get(tag) if tag else None
        return value if isinstance(value, str) and value else None

    def _reachable(self, channel: str, address: bool = True) -> bool:
        opted = set(self.state.get("u", ()))
        tagged = self.facts.tags.get(OPT_OUT_TAG)
        if isinstance(tagged, list):
            opted |= {str(item) for item in tagged}
        if channel in opted:
            return False
        if not address:
            return True
        tag = ADDRESS_TAGS.get(channel)  # type: ignore[call-overload]
        return tag is None or bool(self.facts.tags.get(tag))

    def _zone(self, definition: JourneyDefinition, name: str) -> Any:
        if name == "user":
            return user_zone(self.facts.tags, definition.settings.timezone)
        return user_zone({}, name)

    def _leave(
        self, journey_id: str, visit: dict[str, Any], activity: Activity, detail: str, now: int
    ) -> None:
        self.state["in"].pop(journey_id, None)
        self.result.activity.append(
            self._row(
                journey_id,
                visit["v"],
                visit["r"],
                visit["n"],
                activity,
                now,
                detail,
                "",
                visit["s"],
            )
        )

    def _activity(
        self,
        journey_id: str,
        visit: dict[str, Any],
        node: str,
        activity: Activity,
        now: int,
        detail: str = "",
        cause: str = "",
    ) -> None:
        self.result.activity.append(
            self._row(
                journey_id,
                visit["v"],
                visit["r"],
                node,
                activity,
                now,
                detail,
                "",
                visit["s"],
                cause,
            )
        )

    def _row(
        self,
        journey_id: str,
        version: int,
        run: str,
        node: str,
        activity: Activity,
        now: int,
        detail: str = "",
        command: str = "",
        visit: int = 0,
        cause: str = "",
    ) -> dict[str, Any]:
        return {
            "journey_id": journey_id,
            "journey_version": version,
            "run": run,
            "user_id": self.facts.user_id,
            "step": node,
            "activity": str(activity),
            "at": _instant(now),
            "detail": detail,
            "command_id": command,
            "visit": visit,
            "cause": cause,
        }


def _instant(ms: int) -> datetime:
    """``from_ms``, remembered for the last instant: every row of a step, and of every
    user in a sweep, carries the same one."""
    global _last_instant
    if _last_instant[0] != ms:
        _last_instant = (ms, from_ms(ms))
    return _last_instant[1]


_last_instant: tuple[int, datetime] = (0, from_ms(0))

_CAP_HORIZON = 366 * 86_400_000
_CAP_SENDS = 100
"""Sends older than a year, or beyond the last hundred, are forgotten (caps are at
most 100 messages and count back at most a year)."""
