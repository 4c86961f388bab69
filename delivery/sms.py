"""The SMS channel through a Twilio-compatible REST API: one ``POST
{base}/2010-04-01/Accounts/{sid}/Messages.json`` (form-encoded ``To``, ``From`` or
``MessagingServiceSid``, ``Body``, ``StatusCallback``; HTTP basic auth with the
account SID and auth token) per phone number of the command.

- The command's ``devices`` are the user's phone numbers; without any, its ``address``
  (the ``Phone`` tag).
- Each request carries ``I-Twilio-Idempotency-Token``, derived from the command id and
  the device id, and a number the provider accepted is not asked again by this process:
  a retry of the command does not send the text twice.
- Answers: 2xx -> ``delivered`` (the provider took it); error 21211 / 21614 (not a
  valid or not a mobile number) -> ``failed`` with the provider's message, and the
  number unregistered; 21610 (the user replied STOP) -> ``failed`` and the user opted
  out of SMS (``unsubscribed``); another 4xx -> ``failed``; 429 / 5xx -> tried again,
  honouring ``Retry-After``, then the worker retries later.
- ``StatusCallback`` points at ``/t/sms/status`` of the HTTP API (api/messaging.py)
  with a signed reference to the command: ``undelivered`` / ``failed`` come back as
  ``bounced`` / ``failed`` feedback.

Configured by ``REACH_TWILIO_*``; without an account SID, SMS goes to the simulator.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime
from typing import Any

import httpx

from delivery.channels import Message, Outcome, Result
from delivery.provider import (
    Answers,
    ProviderUnavailable,
    Reference,
    References,
    Retries,
    Sent,
    client,
    secret,
    send,
)
from delivery.simulator import SimulatedChannels
from delivery.tracking_config import tracking_base, tracking_key
from schemas.devices import PhoneNumber, device_id
from schemas.presets import SmsContent
from streams.settings import Settings

log = logging.getLogger(__name__)

IDEMPOTENCY_HEADER = "I-Twilio-Idempotency-Token"
STATUS_PATH = "/t/sms/status"
INVALID_NUMBER = frozenset({21211, 21614})
"""Not a valid phone number; not a mobile number: the number cannot get SMS."""
DEAD_NUMBER = INVALID_NUMBER | {30005, 30006}
"""Errors a status callback reports that say the number cannot get SMS at all: the
above, an unknown handset (30005), a landline or unreachable carrier (30006)."""
UNSUBSCRIBED = 21610
"""The recipient replied STOP: no more messages to them from this sender."""


def configured(settings: Settings) -> bool:
    return bool(settings.twilio_account_sid)


def sms_channel(settings: Settings) -> Any:
    """The ``sms`` entry point: the provider when configured, else the simulator."""
    return SmsAdapter(settings) if configured(settings) else SimulatedChannels(settings)


def idempotency_token(command_id: str, device: str) -> str:
    return hashlib.sha256(f"sms\0{command_id}\0{device}".encode()).hexdigest()[:32]


def numbers(message: Message) -> list[tuple[str, str]]:
    """(device id, number) of each phone number the command goes to."""
    command = message.command
    found = [
        (device_id(device), device.number)
        for device in command.devices
        if isinstance(device, PhoneNumber)
    ]
    if not found and command.address:
        found = [(device_id(PhoneNumber.model_construct(number=command.address)), command.address)]
    return list(dict.fromkeys(found))


class SmsAdapter:
    channels = frozenset({"sms"})

    def __init__(self, settings: Settings, retries: Retries | None = None) -> None:
        if not settings.twilio_from and not settings.twilio_messaging_service_sid:
            raise ValueError("SMS needs REACH_TWILIO_FROM or REACH_TWILIO_MESSAGING_SERVICE_SID")
        self._settings = settings
        self._sid = settings.twilio_account_sid
        self._token = secret(settings.twilio_auth_token, settings.twilio_auth_token_file)
        if not self._token:
            raise ValueError("SMS needs REACH_TWILIO_AUTH_TOKEN or REACH_TWILIO_AUTH_TOKEN_FILE")
        self._retries = retries or Retries()
        self._client: httpx.AsyncClient | None = None
        self._references: References | None = None
        self.sent = Sent()

    @property
    def auth_token(self) -> str:
        """For the status callback's signature check."""
        return self._token

    async def start(self) -> None:
        if self._client is None:
            self._client = client(
                self._settings.twilio_base_url.rstrip("/"), auth=(self._sid, self._token)
            )

    async def stop(self) -> None:
        held, self._client = self._client, None
        if held is not None:
            await held.aclose()

    def _callback(self, reference: Reference) -> str | None:
        base = tracking_base(self._settings)
        if base is None:
            return None
        if self._references is None:
            self._references = References(tracking_key(self._settings))
        return f"{base}{STATUS_PATH}?ref={self._references.make(reference)}"

    async def deliver(self, message: Message) -> Result:
        rendered = message.content
        if rendered is None or not isinstance(rendered.content, SmsContent):
            return Result(Outcome("failed", "no SMS content to send"))
        command = message.command
        targets = numbers(message)
        if not targets:
            return Result(Outcome("failed", "the user has no phone number"))
        await self.start()
        answers = Answers()
        for device, number in targets:
            if (command.command_id, device) in self.sent:
                answers.accepted.append(device)
                continue
            try:
                await self._one(message, device, number, rendered.content.text, answers)
            except ProviderUnavailable as fault:
                # The numbers found dead before this one are unregistered still.
                raise fault.with_unregistered(answers.unregistered) from fault
        return answers.result(datetime.now(UTC))

    async def _one(
        self, message: Message, device: str, number: str, text: str, answers: Answers
    ) -> None:
        command = message.command
        form = {"To": number, "Body": text}
        if self._settings.twilio_messaging_service_sid:
            form["MessagingServiceSid"] = self._settings.twilio_messaging_service_sid
        else:
            form["From"] = self._settings.twilio_from
        callback = self._callback(Reference(command.command_id, command.user_id, "sms", device))
        if callback is not None:
            form["StatusCallback"] = callback
        headers = {IDEMPOTENCY_HEADER: idempotency_token(command.command_id, device)}
        path = f"/2010-04-01/Accounts/{self._sid}/Messages.json"
        assert self._client is not None
        http = self._client
        response = await send(
            lambda: http.post(path, data=form, headers=headers), self._retries, "SMS provider"
        )
        if response.is_success:
            self.sent.add((command.command_id, device))
            answers.accepted.append(device)
            return
        code, text_of_error = _error(response)
        reason = f"{code or response.status_code} {text_of_error}".strip()
        answers.failures.append(reason)
        if code in INVALID_NUMBER:
            answers.unregistered.append(device)
        elif code == UNSUBSCRIBED:
            answers.unsubscribed = True
        log.info("%s: SMS refused: %s", command.command_id, reason)


def _error(response: httpx.Response) -> tuple[int | None, str]:
    """The provider's error code and message (``{"code": 21211, "message": ...}``)."""
    try:
        body = response.json()
    except ValueError:
        return None, response.text[:200]
    if not isinstance(body, dict):
        return None, ""
    code = body.get("code")
    return (code if isinstance(code, int) else None), str(body.get("message") or "")[:500]
