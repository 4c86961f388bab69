"""A user's devices and addresses: where each channel can reach them.

A user has any number of them: push tokens of their apps (iOS through APNs, Android
through FCM), web push subscriptions of their browsers, phone numbers (SMS, and
WhatsApp once they opted in) and email addresses. A message step sends to every live
device of its channel; a provider saying a token is gone unregisters that device.

Each device has a stable id derived from what addresses it (the token, the endpoint,
the number, the address): registering the same device twice keeps one, and the id
names it in feedback, in provider idempotency keys and in an unregister request.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal

import phonenumbers
from pydantic import AfterValidator, BaseModel, Field, model_validator

from schemas.identity import content_id
from schemas.journey_nodes import Channel
from schemas.values import CONTRACT, Timestamp, UserId


class Platform(StrEnum):
    IOS = "ios"
    """Reached through APNs."""
    ANDROID = "android"
    """Reached through FCM."""


class PushEnvironment(StrEnum):
    """The APNs environment a token was issued in (FCM has one)."""

    SANDBOX = "sandbox"
    PRODUCTION = "production"


def _e164(value: str) -> str:
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException as error:
        raise ValueError(
            f"not a phone number in E.164 form (+<country><number>): {error}"
        ) from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError("not a valid phone number")
    formatted = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if formatted != value:
        raise ValueError(f"write the number in E.164 form: {formatted}")
    return value


_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _email(value: str) -> str:
    if not _EMAIL.match(value):
        raise ValueError("not an email address")
    return value


def _https(value: str) -> str:
    if not value.startswith("https://"):
        raise ValueError("a web push endpoint is an https:// URL")
    return value


class PushDevice(BaseModel):
    """An app installation's push token."""

    model_config = CONTRACT

    kind: Literal["push"] = "push"
    platform: Platform
    token: str = Field(min_length=1, max_length=4096)
    app_id: str = Field(min_length=1, max_length=256)
    """The app's bundle id (iOS: the APNs topic) or package name (Android)."""
    environment: PushEnvironment = PushEnvironment.PRODUCTION


class WebPushSubscription(BaseModel):
    """A browser's push subscription (the ``PushSubscription`` JSON of the Push API)."""

    model_config = CONTRACT

    kind: Literal["web_push"] = "web_push"
    endpoint: Annotated[str, AfterValidator(_https)] = Field(max_length=2048)
    p256dh: str = Field(min_length=1, max_length=256)
    """The browser's public key (base64url, uncompressed P-256 point)."""
    auth: str = Field(min_length=1, max_length=256)
    """The authentication secret (base64url)."""


class PhoneNumber(BaseModel):
    """A phone number: SMS, and WhatsApp once the user opted in."""

    model_config = CONTRACT

    kind: Literal["phone"] = "phone"
    number: Annotated[str, AfterValidator(_e164)] = Field(max_length=32)
    whatsapp: bool = False
    """The user opted in to WhatsApp messages on this number."""


class EmailAddress(BaseModel):
    model_config = CONTRACT

    kind: Literal["email"] = "email"
    address: Annotated[str, AfterValidator(_email)] = Field(max_length=320)


Device = Annotated[
    PushDevice | WebPushSubscription | PhoneNumber | EmailAddress,
    Field(discriminator="kind"),
]


def device_id(device: PushDevice | WebPushSubscription | PhoneNumber | EmailAddress) -> str:
    """The device's stable id: from what addresses it, never from its other fields."""
    match device:
        case PushDevice():
            key = device.token
        case WebPushSubscription():
            key = device.endpoint
        case PhoneNumber():
            key = device.number
        case EmailAddress():
            key = device.address.lower()
    return content_id("device", device.kind, key)[:16]


def device_channels(
    device: PushDevice | WebPushSubscription | PhoneNumber | EmailAddress,
) -> tuple[Channel, ...]:
    """The channels a device serves."""
    match device:
        case PushDevice():
            return (Channel.PUSH,)
        case WebPushSubscription():
            return (Channel.WEB_PUSH,)
        case PhoneNumber():
            return (Channel.SMS, Channel.WHATSAPP) if device.whatsapp else (Channel.SMS,)
        case EmailAddress():
            return (Channel.EMAIL,)


MAX_DEVICES = 20
"""Live devices and addresses one user may have: a registration beyond it is refused
(a dead letter with reason ``too_many_devices``) until one is unregistered."""

DEVICE_ID_LENGTH = 16
"""The length of a ``device_id``."""


class DeviceOp(StrEnum):
    REGISTER = "register"
    """Add ``device``, or update it when its id is already registered."""
    UNREGISTER = "unregister"
    """Remove the device ``device_id`` (or the one ``device`` names); an unknown one:
    nothing happens."""
    OPT_OUT = "opt_out"
    """The user opted out of ``channel``: not reachable on it, whatever devices they have."""
    OPT_IN = "opt_in"
    """The user opted in to ``channel`` again (after an ``opt_out`` or an unsubscribe)."""


def _derive_update_id(data: dict[str, Any]) -> str:
    device = data.get("device")
    if isinstance(device, BaseModel):
        device = device.model_dump(mode="json")
    return content_id(
        "devices",
        data["user_id"],
        data.get("op", DeviceOp.REGISTER),
        data["timestamp"],
        device,
        data.get("device_id"),
        data.get("channel"),
    )


class DeviceUpdate(BaseModel):
    """One change to a user's devices and addresses (``schemas.devices``), or to their
    consent on a channel.

    - ``register``: ``device`` is added (registering an id already there updates it);
    - ``unregister``: ``device_id`` (or ``device``) is removed; ``reason`` says why
      (``provider: Unregistered`` when a provider said the token is gone);
    - ``opt_out`` / ``opt_in``: ``channel``.
    """

    model_config = CONTRACT

    user_id: UserId
    op: DeviceOp = DeviceOp.REGISTER
    device: Device | None = None
    device_id: str | None = Field(default=None, min_length=1, max_length=64)
    channel: Channel | None = None
    reason: str = Field(default="", max_length=256)
    timestamp: Timestamp
    update_id: str = Field(default_factory=_derive_update_id, min_length=1, max_length=128)

    @model_validator(mode="after")
    def _fields_fit_op(self) -> DeviceUpdate:
        op = self.op
        if self.device is not None and self.device_id not in (None, device_id(self.device)):
            raise ValueError("device_id is not the device's id (leave it out)")
        if op is DeviceOp.REGISTER:
            if self.device is None:
                raise ValueError("'register' needs a device")
        elif op is DeviceOp.UNREGISTER:
            if self.device is None and self.device_id is None:
                raise ValueError("'unregister' needs a device_id or a device")
        elif self.channel is None:
            raise ValueError(f"'{op}' needs a channel")
        elif self.device is not None or self.device_id is not None:
            raise ValueError(f"'{op}' takes a channel, no device")
        if op in (DeviceOp.REGISTER, DeviceOp.UNREGISTER) and self.channel is not None:
            raise ValueError(f"'{op}' takes no channel")
        return self

    @property
    def target(self) -> str | None:
        """The id of the device the update is about (None: a consent change)."""
        if self.device is not None:
            return device_id(self.device)
        return self.device_id
