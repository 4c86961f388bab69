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
from typing import Annotated, Literal

import phonenumbers
from pydantic import AfterValidator, BaseModel, Field

from schemas.identity import content_id
from schemas.journey_nodes import Channel
from schemas.values import CONTRACT


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
