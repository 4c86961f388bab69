"""What journeys emit: send commands for the delivery workers, and journey activity
(one record per thing that happened to a user in a journey) for the statistics.

A send command's id is deterministic: the journey, version, run, node and visit, and
a digest that adds the user. Replaying the inputs re-creates the same id for the same
step visit, so consumers dedupe by it. The id is readable: the feedback that comes
back with it says which journey and step it belongs to (``parse_command_id``).
"""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import Annotated, Any, NamedTuple

import orjson
from pydantic import AfterValidator, BaseModel, Field

from schemas.devices import Device
from schemas.identity import content_id
from schemas.values import CONTRACT, Timestamp, UserId

WEBHOOK = "webhook"
"""The channel of a webhook step's command."""


def command_id(journey: str, version: int, run: str, user: str, node: str, visit: int) -> str:
    # ``content_id("send", ...)`` without its options and fallbacks, which plain strings
    # and integers do not need: the same bytes, hashed on every send of a launch.
    canonical = orjson.dumps(("send", journey, version, run, user, node, visit))
    digest = hashlib.blake2b(canonical, digest_size=16).hexdigest()[:16]
    return f"{journey}:{version}:{run}:{node}:{visit}:{digest}"


class CommandRef(NamedTuple):
    journey: str
    version: int
    run: str
    node: str
    visit: int


def parse_command_id(value: str) -> CommandRef | None:
    """The journey step a command id names; None for ids not made by a journey."""
    parts = value.split(":")
    if len(parts) != 6 or not parts[1].isdigit() or not parts[4].isdigit():
        return None
    return CommandRef(parts[0], int(parts[1]), parts[2], parts[3], int(parts[4]))


class SendCommand(BaseModel):
    """Deliver ``preset`` on ``channel`` to ``user_id``: one record on the
    send-commands topic, keyed by user id."""

    model_config = CONTRACT

    command_id: str = Field(min_length=1, max_length=256)
    user_id: UserId
    channel: str
    preset: str | None = None
    url: str | None = None
    """Where a webhook step posts."""
    journey_id: str
    journey_version: int
    run: str
    step: str
    visit: int
    properties: dict[str, Any] = Field(default_factory=dict)
    """The entry properties (API entries; the trigger event's attributes)."""
    at: Timestamp
    address: str | None = None
    """The user's address on the channel (their ``Email``, ``Phone``, ... tag)."""
    devices: list[Device] = Field(default_factory=list, max_length=64)
    """The user's live devices of the channel in the device registry when the step ran
    (``schemas.devices``): the message goes to each. Empty: only ``address`` (a tag),
    or a channel without addresses (in-app)."""
    tags: dict[str, Any] = Field(default_factory=dict)
    """The user's tags when the step ran, as the segment state stores them (dates as
    ``{"d": ms}``, ...), for personalisation: delivery needs no other lookup. Their
    ``Country``, ``Language`` and ``Time zone`` are the send's dimensions."""
    variant: str = ""
    """The branch the visit's last A/B split sent the user down (empty: none)."""
    event_at: Timestamp | None = None
    """The instant of the input that led to the send (an event's, an entry's), beside
    ``at``, when it was applied; None in records of earlier versions (then ``at``)."""


class Activity(StrEnum):
    ENTERED = "entered"
    """Into the journey (step: the start node) or into a step."""
    SENT = "sent"
    CAPPED = "capped"
    """A send the frequency cap held back: the user goes on as if it was not opened."""
    SUPPRESSED = "suppressed"
    """A send to a channel the user opted out of."""
    UNREACHABLE = "unreachable"
    """A send to a channel the user has no address on (detail: the missing tag)."""
    DELIVERED = "delivered"
    OPENED = "opened"
    CLICKED = "clicked"
    NOT_OPENED = "not_opened"
    """The open/ignore split of a message ended without an open (command: the
    message's)."""
    FAILED = "failed"
    """The channel could not deliver the message (feedback ``failed``)."""
    BOUNCED = "bounced"
    """The provider refused the message for the address (feedback ``bounced``)."""
    GOAL = "goal"
    EXITED = "exited"
    """Left through an exit step, or a goal that ends the journey."""
    DROPPED = "dropped"
    """Left without finishing: the journey stopped, the user left its segment."""
    SKIPPED = "skipped"
    """An entry refused: already inside, or re-entry not allowed."""
    HELD_OUT = "held_out"
    """An entry the global holdout kept out (journey level, at the start node): the
    user gets nothing from the journey, and counts in its holdout group."""
    HOLDOUT_GOAL = "holdout_goal"
    """A goal of a held-out user, within the goal's ``after_exit`` of the held-out
    entry (detail: the goal's name): the holdout group's conversion."""


class JourneyActivity(BaseModel):
    """One thing that happened to one user in a journey, at a step."""

    model_config = CONTRACT

    journey_id: str
    journey_version: int
    run: str
    user_id: UserId
    step: str
    """The node id; the journey-level rows (entered, skipped) name the start node."""
    activity: Activity
    at: Timestamp
    detail: str = ""
    """Why (a goal's name, a drop's reason, an output taken)."""
    command_id: str = ""
    visit: int = Field(default=0, ge=0)
    """Steps the visit had taken when this happened (0: not a step of a visit)."""
    cause: str = Field(default="", max_length=256)
    """The input that made this row, when an input makes it directly (a goal's event,
    a feedback, a refused entry): ``e:`` event id, ``f:`` feedback id, ``a:`` entry id,
    ``r:`` audience run. Part of the row's identity (``activity_id``)."""
    trigger: str = Field(default="", max_length=256)
    """What made this row, for every row (empty in records of earlier versions): the
    input (``e:``/``f:``/``a:``/``r:`` as ``cause``, ``t:`` a tag update), a wait or a
    waiting entry that came due (``timer:`` its instant in ms, whichever input or tick
    the runtime moved it on), a segment timer (``timer:``), a definition change
    (``d:``), a journey stopped (``stop:`` the journey), a sweep's tick (``tick``). Not
    part of the identity: it explains the row, the row stays the fact it was."""
    source: str = Field(default="", max_length=8)
    """The topic letter of the input record that made the row (``e``, ``t``, ``f``,
    ``a``); empty for rows time or a sweep made."""
    offset: int | None = None
    """That input record's offset (never in the identity: a replay by another path
    reads other offsets)."""
    country: str = ""
    language: str = ""
    timezone: str = ""
    """The user's ``Country``, ``Language`` and ``Time zone`` tags when this happened
    (empty: not known)."""
    variant: str = ""
    """The branch the visit's last A/B split sent the user down before this (empty:
    none, or not a step of a visit in progress)."""
    event_at: Timestamp | None = None
    """The instant of the input that made this row (an event's, a feedback's, an
    entry's), beside ``at``, when it was applied; the same as ``at`` for rows time
    alone makes; None in records of earlier versions (then ``at``)."""

    @property
    def activity_id(self) -> str:
        """Row identity, from what happened and never from when it was computed: a
        replay at any ``now`` produces the same row. Within a visit ``visit`` tells
        rows apart; rows an input makes directly carry it as ``cause``. A
        ``not_opened`` row's command is left out of it, as when such rows named none:
        the visit's step tells them apart already, and a replay rewrites an earlier
        version's row."""
        return content_id(
            "activity",
            self.journey_id,
            self.journey_version,
            self.run,
            self.user_id,
            self.step,
            self.activity,
            self.detail,
            identity_command(self.activity, self.command_id),
            self.visit,
            self.cause,
        )


def identity_command(activity: str, command: str) -> str:
    """The command as an activity row's identity counts it: none for ``not_opened``."""
    return "" if activity == "not_opened" else command


def _int64_only(value: Any, where: str = "") -> Any:
    """``value`` unchanged when every integer in it fits in 64 bits (as ClickHouse and
    JSON readers downstream hold them); otherwise ValueError naming where."""
    if isinstance(value, dict | list):
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            _int64_only(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, int) and not -(2**63) <= value < 2**63:
        raise ValueError(f"{where or 'value'}: integer outside 64 bits; send it as a string")
    return value


def _derive_entry_id(data: dict[str, Any]) -> str:
    return content_id(
        "entry", data["journey_id"], data["user_id"], data["at"], data.get("properties", {})
    )


class JourneyEntryRequest(BaseModel):
    """An API entry: put ``user_id`` into a launched journey with an API entry, with
    ``properties`` its messages can use. One item of a record on the journey-entries
    topic (a JSON array of one partition's users, like the input topics)."""

    model_config = CONTRACT

    journey_id: str = Field(min_length=1, max_length=64)
    user_id: UserId
    at: Timestamp
    properties: Annotated[dict[str, Any], AfterValidator(_int64_only)] = Field(default_factory=dict)
    entry_id: str = Field(default_factory=_derive_entry_id, min_length=1, max_length=128)
