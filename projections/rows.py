"""Pure row builders: one contract model (plus where it came from) -> one table row."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

import orjson

from projections.addresses import CLEAR, AddressMask
from schemas import DeadLetter, Event, Feedback, TagUpdate
from schemas.commands import CommandRef, JourneyActivity, SendCommand, parse_command_id
from schemas.devices import (
    DeviceOp,
    DeviceUpdate,
    PhoneNumber,
    PushDevice,
    WebPushSubscription,
    device_channels,
)
from schemas.identity import _jsonable
from schemas.memberships import membership_change_id


class Origin(NamedTuple):
    """The Kafka position a row was read from."""

    partition: int
    offset: int


class Table(NamedTuple):
    name: str
    columns: tuple[str, ...]


EVENTS = Table(
    "events",
    (
        "event_id",
        "user_id",
        "name",
        "ts",
        "attributes",
        "source_partition",
        "source_offset",
        "ingested_at",
    ),
)
TAG_UPDATES = Table(
    "tag_updates",
    (
        "update_id",
        "user_id",
        "op",
        "tags",
        "ts",
        "source_partition",
        "source_offset",
        "ingested_at",
    ),
)
FEEDBACK = Table(
    "feedback",
    (
        "feedback_id",
        "command_id",
        "user_id",
        "status",
        "channel",
        "reason",
        "ts",
        "source_partition",
        "source_offset",
        "ingested_at",
        "journey_id",
        "journey_version",
        "run",
        "step",
    ),
)
DEVICES = Table(
    "devices",
    (
        "user_id",
        "device_id",
        "kind",
        "platform",
        "app_id",
        "environment",
        "channels",
        "address",
        "live",
        "registered_at",
        "unregistered_at",
        "reason",
        "update_id",
        "ts",
        "source_partition",
        "source_offset",
        "ingested_at",
    ),
)
DEAD_LETTERS = Table(
    "dead_letters",
    (
        "source_topic",
        "source_partition",
        "source_offset",
        "source_index",
        "reason",
        "detail",
        "raw",
        "at",
        "dlq_partition",
        "dlq_offset",
    ),
)

SEGMENT_MEMBERSHIPS = Table(
    "segment_memberships",
    (
        "change_id",
        "segment_id",
        "user_id",
        "change",
        "at",
        "version",
        "cause",
        "source_partition",
        "source_offset",
        *(CAUSES := ("condition_values", "input_source", "input_offset")),
    ),
)
"""``condition_values``: the values the segment's leaf conditions read (JSON array);
``input_source`` and
``input_offset``: the topic letter and offset of the input record that made the change
(its partition is ``source_partition``: a change goes to its input's partition)."""

DIMENSIONS = ("country", "language", "timezone", "variant", "event_at")
"""The columns send commands and journey activity rows end with: the user's default
tags when it happened, the A/B branch, the input's own instant."""

SEND_COMMANDS = Table(
    "send_commands",
    (
        "command_id",
        "user_id",
        "channel",
        "preset",
        "url",
        "journey_id",
        "journey_version",
        "run",
        "step",
        "visit",
        "properties",
        "at",
        "source_partition",
        "source_offset",
        *DIMENSIONS,
    ),
)
JOURNEY_ACTIVITY = Table(
    "journey_activity",
    (
        "activity_id",
        "journey_id",
        "journey_version",
        "run",
        "user_id",
        "step",
        "activity",
        "at",
        "detail",
        "command_id",
        "visit",
        "cause",
        "source_partition",
        "source_offset",
        *DIMENSIONS,
        "trigger",
        "input_source",
        "input_offset",
    ),
)

Row = tuple[Any, ...]

NO_STEP = CommandRef("", 0, "", "", 0)


def _json(value: Any) -> str:
    return orjson.dumps(value, default=_jsonable).decode()


def event_row(event: Event, origin: Origin, now: datetime) -> Row:
    return (
        event.event_id,
        event.user_id,
        event.name,
        event.timestamp,
        _json(event.attributes),
        origin.partition,
        origin.offset,
        now,
    )


def tag_update_row(
    update: TagUpdate, origin: Origin, now: datetime, addresses: AddressMask = CLEAR
) -> Row:
    """``addresses``: how address tags are projected (the worker passes its keyed mask)."""
    return (
        update.update_id,
        update.user_id,
        update.op.value,
        _json(addresses.mask(update.tags)),
        update.timestamp,
        origin.partition,
        origin.offset,
        now,
    )


def device_row(
    update: DeviceUpdate, origin: Origin, now: datetime, addresses: AddressMask = CLEAR
) -> Row:
    """A device update's row of the registry's projection: no token or endpoint in
    clear, phone numbers and email addresses as ``addresses`` projects them."""
    device = update.device
    kind = platform = app_id = environment = address = ""
    channels: list[str] = []
    if update.channel is not None:  # opt-out or opt-in
        kind, channels = "consent", [str(update.channel)]
        key = f"consent:{update.channel}"
        live = update.op is DeviceOp.OPT_IN
    else:
        key = update.target or ""
        live = update.op is DeviceOp.REGISTER
    if device is not None:
        kind = device.kind
        channels = [str(channel) for channel in device_channels(device)]
        if isinstance(device, PushDevice):
            platform, app_id, environment = device.platform, device.app_id, device.environment
            address = addresses.secret(device.token)
        elif isinstance(device, WebPushSubscription):
            address = addresses.secret(device.endpoint)
        elif isinstance(device, PhoneNumber):
            address = addresses.personal(device.number)
        else:
            address = addresses.personal(device.address)
    return (
        update.user_id,
        key,
        kind,
        str(platform),
        app_id,
        str(environment),
        channels,
        address,
        int(live),
        update.timestamp if live else None,
        None if live else update.timestamp,
        update.reason,
        update.update_id,
        update.timestamp,
        origin.partition,
        origin.offset,
        now,
    )


def feedback_row(feedback: Feedback, origin: Origin, now: datetime) -> Row:
    """With the journey step its command id names (empty for a command no journey made)."""
    ref = parse_command_id(feedback.command_id) or NO_STEP
    return (
        feedback.feedback_id,
        feedback.command_id,
        feedback.user_id,
        feedback.status.value,
        feedback.channel or "",
        feedback.reason or "",
        feedback.timestamp,
        origin.partition,
        origin.offset,
        now,
        ref.journey,
        ref.version,
        ref.run,
        ref.node,
    )


def membership_row(change: dict[str, Any], origin: Origin) -> Row:
    """A row from one change as the segment runtime writes it (``MembershipChanged``'s
    fields, ``at`` in RFC 3339 with Z): trusted, so not validated again."""
    at = change["at"]
    cause = change.get("cause", "")
    return (
        # The same id as MembershipChanged.change_id (for changes without a cause, the
        # text of ``at`` is what the canonical JSON of its datetime would be).
        membership_change_id(
            change["segment_id"], change["user_id"], change["change"], cause or at
        ),
        change["segment_id"],
        change["user_id"],
        change["change"],
        datetime.fromisoformat(at),
        change["version"],
        cause,
        origin.partition,
        origin.offset,
        _values(change.get("values")),
        change.get("source", ""),
        change.get("offset") or 0,
    )


def _values(found: Any) -> str:
    """A change's condition values as their JSON text (empty: none recorded)."""
    return "" if found is None else orjson.dumps(found).decode()


def dead_letter_row(letter: DeadLetter, origin: Origin) -> Row:
    return (
        letter.source_topic,
        letter.source_partition,
        letter.source_offset,
        -1 if letter.source_index is None else letter.source_index,
        letter.reason.value,
        letter.detail,
        letter.raw.decode("utf-8", "replace"),
        letter.at,
        origin.partition,
        origin.offset,
    )


def send_command_row(command: SendCommand, origin: Origin) -> Row:
    return (
        command.command_id,
        command.user_id,
        command.channel,
        command.preset or "",
        command.url or "",
        command.journey_id,
        command.journey_version,
        command.run,
        command.step,
        command.visit,
        _json(command.properties),
        command.at,
        origin.partition,
        origin.offset,
        *tag_dimensions(command.tags),
        command.variant,
        command.event_at or command.at,
    )


def tag_dimensions(tags: dict[str, Any]) -> tuple[str, str, str]:
    """A send command's country, language and time zone: its tags' (empty: none)."""
    return tuple(  # type: ignore[return-value]
        value if type(value) is str else "" for value in map(tags.get, DIMENSION_TAGS)
    )


DIMENSION_TAGS = ("Country", "Language", "Time zone")


def journey_activity_row(activity: JourneyActivity, origin: Origin) -> Row:
    return (
        activity.activity_id,
        activity.journey_id,
        activity.journey_version,
        activity.run,
        activity.user_id,
        activity.step,
        activity.activity.value,
        activity.at,
        activity.detail,
        activity.command_id,
        activity.visit,
        activity.cause,
        origin.partition,
        origin.offset,
        activity.country,
        activity.language,
        activity.timezone,
        activity.variant,
        activity.event_at or activity.at,
        activity.trigger,
        activity.source,
        activity.offset or 0,
    )
