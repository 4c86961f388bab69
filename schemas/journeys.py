"""Journey definitions: a graph of typed steps with named outputs, its entries and its
settings. See docs/journeys.md.

A journey is a flat list of nodes; ``start`` names the first one and each node's
``next`` maps every output its type has (``"next"``, ``"opened"`` / ``"not_opened"``,
a branch name, ...) to the id of the following node. ``check_graph`` refuses
unconnected outputs, unknown targets, unreachable nodes and cycles that could loop
without waiting; references to segments and presets are checked against the
registry when the definition is applied.
"""

from __future__ import annotations

import datetime as dt
import re
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    Field,
    PlainSerializer,
    field_validator,
    model_validator,
)

from schemas.segments import AttributeFilter, SegmentId
from schemas.values import CONTRACT, Name, Value

MAX_NODES = 500
"""Most nodes in one journey; other lists of a definition have limits of their own."""
MAX_ITEMS = 50
"""Most entries, branches, events per branch, filters, variants, goals and silent
hours in one list of a journey definition."""

JourneyId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
NodeId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
PresetId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,127}$")]
OutputName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]

USER_ZONE = "user"
"""Instead of a zone name: each user's own zone (their ``Time zone`` tag, else the
journey's ``timezone``)."""


def _check_zone(value: str, allow_user: bool = True) -> str:
    if allow_user and value == USER_ZONE:
        return value
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        hint = ' or "user"' if allow_user else ""
        raise ValueError(
            f"unknown time zone {value!r} (use an IANA name like Europe/Paris{hint})"
        ) from None
    return value


Zone = Annotated[str, Field(description='An IANA zone name, or "user".')]


class Channel(StrEnum):
    PUSH = "push"
    WEB_PUSH = "web_push"
    EMAIL = "email"
    SMS = "sms"
    WHATSAPP = "whatsapp"
    IN_APP = "in_app"


class Weekday(StrEnum):
    MON = "mon"
    TUE = "tue"
    WED = "wed"
    THU = "thu"
    FRI = "fri"
    SAT = "sat"
    SUN = "sun"

    @property
    def number(self) -> int:
        """Monday is 0, as ``date.weekday()``."""
        return list(Weekday).index(self)


class DurationUnit(StrEnum):
    MINUTES = "minutes"
    HOURS = "hours"
    DAYS = "days"
    WEEKS = "weeks"


_UNIT = {
    DurationUnit.MINUTES: timedelta(minutes=1),
    DurationUnit.HOURS: timedelta(hours=1),
    DurationUnit.DAYS: timedelta(days=1),
    DurationUnit.WEEKS: timedelta(weeks=1),
}


class Duration(BaseModel):
    model_config = CONTRACT

    amount: int = Field(ge=1, le=100_000)
    unit: DurationUnit

    @property
    def delta(self) -> timedelta:
        return self.amount * _UNIT[self.unit]

    @property
    def ms(self) -> int:
        return self.amount * int(_UNIT[self.unit].total_seconds()) * 1000


_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d(:00)?$")


def _parse_hhmm(value: str | dt.time) -> dt.time:
    if isinstance(value, dt.time):
        return value.replace(second=0, microsecond=0, tzinfo=None)
    if not isinstance(value, str) or not _HHMM.fullmatch(value):
        raise ValueError(f"a time of day is HH:MM (00:00 to 23:59), got {value!r}")
    hours, minutes = value.split(":")[:2]
    return dt.time(int(hours), int(minutes))


TimeOfDay = Annotated[
    dt.time,
    BeforeValidator(_parse_hhmm),
    PlainSerializer(lambda value: value.strftime("%H:%M"), return_type=str),
    Field(description="HH:MM, 24-hour"),
]


class EventMatch(BaseModel):
    """An event by name whose attributes pass every filter."""

    model_config = CONTRACT

    event: Name
    filters: tuple[AttributeFilter, ...] = Field(default=(), max_length=MAX_ITEMS)


# --- entries ------------------------------------------------------------------------


class Schedule(BaseModel):
    """When an audience entry takes its segment.

    - ``now``: at launch;
    - ``once``: on ``date`` at ``at`` (HH:MM) in ``timezone``;
    - ``recurring``: every ``every`` days (``unit`` days), or every ``every`` weeks on
      ``weekdays`` (``unit`` weeks), at ``at``, from ``date`` (default: the launch
      day) until ``until`` (inclusive, optional), in ``timezone``.

    With ``timezone: user`` each user enters at that local time in their own zone.
    """

    model_config = CONTRACT

    kind: Literal["now", "once", "recurring"]
    date: dt.date | None = None
    at: TimeOfDay | None = None
    every: int = Field(default=1, ge=1, le=366)
    unit: Literal["days", "weeks"] = "days"
    weekdays: tuple[Weekday, ...] = Field(default=(), max_length=7)
    until: dt.date | None = None
    timezone: Zone = "UTC"

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return _check_zone(value)

    @model_validator(mode="after")
    def _fields_fit_kind(self) -> Schedule:
        if self.kind == "now":
            if self.date or self.at or self.weekdays or self.until:
                raise ValueError("schedule 'now' takes no date, time, weekdays or until")
            if self.timezone == USER_ZONE:
                raise ValueError("schedule 'now' cannot be in the user's time zone")
        elif self.kind == "once":
            if self.date is None or self.at is None:
                raise ValueError("schedule 'once' needs a date and a time ('at', HH:MM)")
            if self.weekdays or self.until:
                raise ValueError("schedule 'once' takes no weekdays or until")
        else:
            if self.at is None:
                raise ValueError("a recurring schedule needs a time of day ('at', HH:MM)")
            if self.unit == "days" and self.weekdays:
                raise ValueError("weekdays need unit 'weeks'")
            if self.unit == "weeks" and not self.weekdays:
                raise ValueError("a weekly schedule needs at least one weekday")
            if len(set(self.weekdays)) != len(self.weekdays):
                raise ValueError("weekdays repeat")
            if self.date and self.until and self.until < self.date:
                raise ValueError("'until' is before the start date")
        return self


class AudienceEntry(BaseModel):
    """The members of a segment when a run starts."""

    model_config = CONTRACT

    kind: Literal["audience"] = "audience"
    segment: SegmentId
    schedule: Schedule = Field(default_factory=lambda: Schedule(kind="now"))


class TriggerEntry(BaseModel):
    """A user enters when they perform a matching event."""

    model_config = CONTRACT

    kind: Literal["trigger"] = "trigger"
    match: EventMatch


class ApiEntry(BaseModel):
    """Users enter through ``POST /v1/journeys/{id}/entries``, with properties the
    messages can use."""

    model_config = CONTRACT

    kind: Literal["api"] = "api"


Entry = Annotated[AudienceEntry | TriggerEntry | ApiEntry, Field(discriminator="kind")]


class Reentry(BaseModel):
    """Whether a user who has been through the journey may enter it again: ``never``,
    ``every_run`` (each audience run or each trigger, once out of the journey), or
    ``after`` a duration since their previous entry."""

    model_config = CONTRACT

    kind: Literal["never", "every_run", "after"] = "never"
    after: Duration | None = None

    @model_validator(mode="after")
    def _after_fits(self) -> Reentry:
        if (self.kind == "after") != (self.after is not None):
            raise ValueError("re-entry 'after' needs a duration ('after'), and only it")
        return self


# --- nodes --------------------------------------------------------------------------


class _Node(BaseModel):
    model_config = CONTRACT

    id: NodeId
    name: str = Field(default="", max_length=256)
    next: dict[OutputName, NodeId] = Field(default_factory=dict)
    """Output name -> the id of the node it leads to."""

    def outputs(self) -> tuple[str, ...]:
        return ("next",)

    def waits(self) -> bool:
        """Whether a user can stay at this node for a while (breaks a loop)."""
        return False


class MessageNode(_Node):
    """Send a message from a preset. With ``split_after`` the user waits that long
    for an open (or click): outputs ``opened`` (as soon as it is opened) and
    ``not_opened`` (when the wait ends without one); without it, ``next``."""

    type: Literal["message"] = "message"
    channel: Channel
    preset: PresetId
    split_after: Duration | None = None

    def outputs(self) -> tuple[str, ...]:
        return ("opened", "not_opened") if self.split_after else ("next",)

    def waits(self) -> bool:
        return self.split_after is not None


class DelayNode(_Node):
    """Wait ``duration``; and/or until the next ``until`` time of day (on one of
    ``weekdays`` if given), in ``timezone``. With both, the duration first."""

    type: Literal["delay"] = "delay"
    duration: Duration | None = None
    until: TimeOfDay | None = None
    weekdays: tuple[Weekday, ...] = Field(default=(), max_length=7)
    timezone: Zone = USER_ZONE

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return _check_zone(value)

    @model_validator(mode="after")
    def _something_to_wait(self) -> DelayNode:
        if self.duration is None and self.until is None and not self.weekdays:
            raise ValueError("a delay needs a duration, a time of day ('until') or weekdays")
        return self

    def waits(self) -> bool:
        return True


class Branch(BaseModel):
    model_config = CONTRACT

    name: OutputName
    events: tuple[EventMatch, ...] = Field(min_length=1, max_length=MAX_ITEMS)


class WaitForEventNode(_Node):
    """Wait for one of the branches' events (the first match wins, branches in
    order); output ``timeout`` when ``timeout`` passes first."""

    type: Literal["wait_for_event"] = "wait_for_event"
    branches: tuple[Branch, ...] = Field(min_length=1, max_length=MAX_ITEMS)
    timeout: Duration

    @model_validator(mode="after")
    def _distinct_names(self) -> WaitForEventNode:
        names = [branch.name for branch in self.branches]
        if len(set(names)) != len(names) or "timeout" in names:
            raise ValueError("branch names must be distinct and not 'timeout'")
        return self

    def outputs(self) -> tuple[str, ...]:
        return (*(branch.name for branch in self.branches), "timeout")

    def waits(self) -> bool:
        return True


class SegmentSplitNode(_Node):
    """Outputs ``in`` when the user is a member of ``segment`` now, else ``not_in``."""

    type: Literal["segment_split"] = "segment_split"
    segment: SegmentId

    def outputs(self) -> tuple[str, ...]:
        return ("in", "not_in")


class Variant(BaseModel):
    model_config = CONTRACT

    name: OutputName
    percent: int = Field(ge=0, le=100)


class ABSplitNode(_Node):
    """Each user goes to one variant, stably (a hash of journey, node and user), in
    the given proportions (whole percents adding up to 100)."""

    type: Literal["ab_split"] = "ab_split"
    variants: tuple[Variant, ...] = Field(min_length=2, max_length=MAX_ITEMS)

    @model_validator(mode="after")
    def _percents(self) -> ABSplitNode:
        names = [variant.name for variant in self.variants]
        if len(set(names)) != len(names):
            raise ValueError("variant names repeat")
        total = sum(variant.percent for variant in self.variants)
        if total != 100:
            raise ValueError(f"variant percents add up to {total}, not 100")
        return self

    def outputs(self) -> tuple[str, ...]:
        return tuple(variant.name for variant in self.variants)


class ReachabilityNode(_Node):
    """Outputs ``reachable`` when the user has an address for ``channel`` (see
    ``ADDRESS_TAGS``) and has not opted out of it, else ``unreachable``."""

    type: Literal["reachability"] = "reachability"
    channel: Channel

    def outputs(self) -> tuple[str, ...]:
        return ("reachable", "unreachable")


class UpdateProfileNode(_Node):
    """Set tags on the user (a tag update on the tags topic, from the journey)."""

    type: Literal["update_profile"] = "update_profile"
    tags: dict[Name, Value] = Field(min_length=1, max_length=MAX_ITEMS)


class WebhookNode(_Node):
    """POST the user, journey and entry properties to ``url`` (a send command on the
    ``webhook`` channel)."""

    type: Literal["webhook"] = "webhook"
    url: str = Field(pattern=r"^https?://\S+$", max_length=2048)


class ExitNode(_Node):
    type: Literal["exit"] = "exit"

    def outputs(self) -> tuple[str, ...]:
        return ()


Node = Annotated[
    MessageNode
    | DelayNode
    | WaitForEventNode
    | SegmentSplitNode
    | ABSplitNode
    | ReachabilityNode
    | UpdateProfileNode
    | WebhookNode
    | ExitNode,
    Field(discriminator="type"),
]

ADDRESS_TAGS: dict[Channel, str | None] = {
    Channel.PUSH: "Push Token",
    Channel.WEB_PUSH: "Web Push Token",
    Channel.EMAIL: "Email",
    Channel.SMS: "Phone",
    Channel.WHATSAPP: "Phone",
    Channel.IN_APP: None,  # shown in the app: every user who opens it
}
"""The tag holding a user's address on each channel."""
OPT_OUT_TAG = "Unsubscribed"
"""A list tag of the channels a user opted out of (feedback ``unsubscribed`` adds to
what the journey engine remembers, too)."""


# --- settings -----------------------------------------------------------------------


class Goal(BaseModel):
    """A conversion: a matching event while the user is inside. With ``exits`` the
    user leaves the journey there."""

    model_config = CONTRACT

    name: OutputName
    match: EventMatch
    exits: bool = True


class FrequencyCap(BaseModel):
    """At most ``messages`` per user per ``period``, counting every journey's sends."""

    model_config = CONTRACT

    messages: int = Field(ge=1, le=100)
    period: Duration

    @model_validator(mode="after")
    def _at_most_a_year(self) -> FrequencyCap:
        if self.period.delta > timedelta(days=366):
            raise ValueError("a frequency cap counts back at most a year")
        return self


class SilentHours(BaseModel):
    """No sends on ``channels`` (all when empty) between ``start`` and ``end`` in the
    user's zone; a send due inside waits for ``end``."""

    model_config = CONTRACT

    start: TimeOfDay
    end: TimeOfDay
    channels: tuple[Channel, ...] = Field(default=(), max_length=len(Channel))

    @model_validator(mode="after")
    def _not_empty(self) -> SilentHours:
        if self.start == self.end:
            raise ValueError("silent hours start and end at the same time")
        return self


class JourneySettings(BaseModel):
    model_config = CONTRACT

    timezone: str = "UTC"
    """The zone of users without a ``Time zone`` tag, where steps say ``user``."""
    reentry: Reentry = Field(default_factory=Reentry)
    goals: tuple[Goal, ...] = Field(default=(), max_length=MAX_ITEMS)
    frequency_cap: FrequencyCap | None = None
    silent_hours: tuple[SilentHours, ...] = Field(default=(), max_length=MAX_ITEMS)
    exit_when_leaving_segment: bool = False
    """Users who entered from an audience leave the journey (dropped) when they leave
    its segment."""

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return _check_zone(value, allow_user=False)


class JourneyDefinition(BaseModel):
    """A journey. ``version`` is given by the engine when the definition is applied."""

    model_config = CONTRACT

    id: JourneyId
    name: str = Field(min_length=1, max_length=256)
    description: str = ""
    entries: tuple[Entry, ...] = Field(min_length=1, max_length=MAX_ITEMS)
    start: NodeId
    nodes: tuple[Node, ...] = Field(min_length=1, max_length=MAX_NODES)
    settings: JourneySettings = Field(default_factory=JourneySettings)
    version: int = 0

    @model_validator(mode="after")
    def _graph(self) -> JourneyDefinition:
        problems = graph_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def node(self, node_id: str) -> Node:
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise KeyError(node_id)

    @property
    def segments(self) -> set[str]:
        """Segments the journey reads (entries and splits)."""
        used = {entry.segment for entry in self.entries if isinstance(entry, AudienceEntry)}
        used |= {node.segment for node in self.nodes if isinstance(node, SegmentSplitNode)}
        return used

    @property
    def presets(self) -> set[str]:
        return {node.preset for node in self.nodes if isinstance(node, MessageNode)}


def graph_problems(journey: JourneyDefinition) -> list[str]:
    """Unconnected or unknown outputs, unknown start, unreachable nodes, and cycles
    with no waiting step in them, as readable messages naming the node."""
    problems: list[str] = []
    nodes = {}
    for node in journey.nodes:
        if node.id in nodes:
            problems.append(f"node '{node.id}' is defined twice")
        nodes[node.id] = node
    if journey.start not in nodes:
        problems.append(f"start node '{journey.start}' is not among the nodes")
    for node in journey.nodes:
        expected = node.outputs()
        for output in expected:
            if output not in node.next:
                problems.append(f"node '{node.id}': output '{output}' is not connected")
        for output, target in sorted(node.next.items()):
            if output not in expected:
                known = ", ".join(expected) or "none"
                problems.append(
                    f"node '{node.id}': no output '{output}' on a {node.type} step "
                    f"(outputs: {known})"
                )
            elif target not in nodes:
                problems.append(
                    f"node '{node.id}': output '{output}' leads to unknown node '{target}'"
                )
    if problems:
        return problems
    reached: set[str] = set()
    todo = [journey.start]
    while todo:
        node_id = todo.pop()
        if node_id not in reached:
            reached.add(node_id)
            todo.extend(nodes[node_id].next.values())
    for node in journey.nodes:
        if node.id not in reached:
            problems.append(f"node '{node.id}' cannot be reached from the start")
    # A loop must pass through a step that waits, or a user would spin in it for ever.
    instant = {node.id: list(node.next.values()) for node in journey.nodes if not node.waits()}
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(node_id: str, path: list[str]) -> None:
        state[node_id] = 1
        path.append(node_id)
        for target in instant.get(node_id, ()):
            if target not in instant:
                continue
            if state.get(target) == 1:
                cycle = [*path[path.index(target) :], target]
                problems.append("a loop with no waiting step: " + " -> ".join(cycle))
            elif target not in state:
                visit(target, path)
        path.pop()
        state[node_id] = 2

    for node_id in sorted(instant):
        if node_id not in state:
            visit(node_id, [])
    return problems
