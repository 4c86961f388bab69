"""The steps of a journey (one model per node type, ``Node`` their union) and the values
they and the rest of a journey definition are written with: ids, channels, durations,
times of day, zones, event matches. See docs/journeys.md."""

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

MAX_ITEMS = 50
"""Most entries, branches, events per branch, filters, variants, goals and silent
hours in one list of a journey definition."""

NodeId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
PresetId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,127}$")]
OutputName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]

USER_ZONE = "user"
"""Instead of a zone name: each user's own zone (their ``Time zone`` tag, else the
journey's ``timezone``)."""


def check_zone(value: str, allow_user: bool = True) -> str:
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
        return check_zone(value)

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
