"""Journey definitions: a graph of typed steps with named outputs, its entries and its
settings. See docs/journeys.md.

A journey is a flat list of nodes; ``start`` names the first one and each node's
``next`` maps every output its type has (``"next"``, ``"opened"`` / ``"not_opened"``,
a branch name, ...) to the id of the following node. ``check_graph`` refuses
unconnected outputs, unknown targets, unreachable nodes and cycles that could loop
without waiting; references to segments and presets are checked against the
registry when the definition is applied. The node types, and the values a definition
is written with, are in ``schemas/journey_nodes.py``.
"""

from __future__ import annotations

import datetime as dt
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    Field,
    field_validator,
    model_validator,
)

from schemas.journey_nodes import (
    MAX_ITEMS,
    USER_ZONE,
    Channel,
    Duration,
    EventMatch,
    MessageNode,
    Node,
    NodeId,
    OutputName,
    SegmentSplitNode,
    TimeOfDay,
    Weekday,
    Zone,
    check_zone,
)
from schemas.segments import SegmentId
from schemas.values import CONTRACT

MAX_NODES = 500
"""Most nodes in one journey; other lists of a definition have limits of their own."""

JourneyId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]


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
        return check_zone(value)

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


# --- settings -----------------------------------------------------------------------


class Goal(BaseModel):
    """A conversion: a matching event while the user is inside. With ``exits`` the
    user leaves the journey there. With ``after_exit`` it also counts, once, up to
    that long after the journey's last message to the user once they left (their
    conversion window), attributed to their last opened message, else their last sent
    one; and for users of the global holdout, that long after their would-be entry."""

    model_config = CONTRACT

    name: OutputName
    match: EventMatch
    exits: bool = True
    after_exit: Duration | None = None

    @model_validator(mode="after")
    def _window_at_most_a_year(self) -> Goal:
        if self.after_exit is not None and self.after_exit.delta > timedelta(days=366):
            raise ValueError("a goal counts at most a year after exit")
        return self


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
        return check_zone(value, allow_user=False)


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
