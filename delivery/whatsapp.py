"""The WhatsApp channel through the WhatsApp Business Cloud API: one ``POST
{base}/{version}/{phone number id}/messages`` (JSON, bearer token) per opted-in
number of the command.

- The command's ``devices`` are the user's phone numbers with WhatsApp opt-in;
  without any, its ``address``.
- A preset with ``template`` sends that approved template in its ``language`` with
  the rendered ``parameters`` as the body's text parameters. A preset with ``text``
  sends a text message, which WhatsApp delivers only within 24 hours of the user's last
  message to the business: the ``WhatsApp Inbound`` tag (the instant of that message,
  set by the integration) must be within 24 hours of the send, or the message
  ``failed`` saying so.
- Answers: 2xx -> ``delivered`` (the API took it); error 131026 (undeliverable) ->
  ``failed``; 131047 (more than 24 hours since the user's last message: re-engage
  with a template) -> ``failed`` with that reason; another 4xx -> ``failed``; 429,
  5xx and the throughput errors (130429, 131056, 80007) -> tried again, honouring
  ``Retry-After``, then the worker retries later. A number the API accepted is not
  asked again by this process (the API has no idempotency key).
- Each message carries a signed reference to the command in
  ``biz_opaque_callback_data``; the status webhook (``/t/whatsapp``,
  api/messaging.py) turns ``read`` into ``opened`` and ``failed`` into ``failed``.

Configured by ``REACH_WHATSAPP_*``; without a phone number id, WhatsApp goes to the
simulator.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
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
from delivery.tracking_config import tracking_key
from engine.time import from_ms
from schemas.devices import PhoneNumber, device_id
from schemas.presets import WhatsAppContent
from schemas.values import parse_timestamp
from streams.settings import Settings

log = logging.getLogger(__name__)

INBOUND_TAG = "WhatsApp Inbound"
"""The instant of the user's last message to the business: opens the 24-hour window."""
WINDOW = timedelta(hours=24)
UNDELIVERABLE = 131026
REENGAGEMENT = 131047
THROTTLED = frozenset({130429, 131056, 80007, 4})
MAX_CALLBACK_DATA = 512
"""``biz_opaque_callback_data`` holds at most this many characters."""


def configured(settings: Settings) -> bool:
    return bool(settings.whatsapp_phone_number_id)


def whatsapp_channel(settings: Settings) -> Any:
    """The ``whatsapp`` entry point: the Cloud API when configured, else the simulator."""
    return WhatsAppAdapter(settings) if configured(settings) else SimulatedChannels(settings)


def numbers(message: Message) -> list[tuple[str, str]]:
    command = message.command
    found = [
        (device_id(device), device.number)
        for device in command.devices
        if isinstance(device, PhoneNumber) and device.whatsapp
    ]
    if not found and not command.devices and command.address:
        found = [(device_id(PhoneNumber.model_construct(number=command.address)), command.address)]
    return list(dict.fromkeys(found))


def last_inbound(tags: dict[str, Any]) -> datetime | None:
    """The ``WhatsApp Inbound`` tag as an instant (stored ``{"d": ms}``, an ISO text
    or epoch milliseconds); None without a readable one."""
    value = tags.get(INBOUND_TAG)
    try:
        if isinstance(value, dict) and set(value) == {"d"}:
            return from_ms(int(value["d"]))
        if isinstance(value, dict) and value.get("type") == "date":
            return parse_timestamp(value["value"])
        if isinstance(value, int | str) and not isinstance(value, bool):
            return parse_timestamp(value)
    except (KeyError, TypeError, ValueError, OverflowError):
        return None
    return None


def outside_window(message: Message) -> str | None:
    """Why a text message cannot go now, or None."""
    command = message.command
    inbound = last_inbound(command.tags)
    if inbound is None:
        return (
            "a WhatsApp text goes only within 24 hours of the user's last message, "
            f"and the user has no '{INBOUND_TAG}' tag: send a template"
        )
    if command.at - inbound > WINDOW:
        return (
            "a WhatsApp text goes only within 24 hours of the user's last message "
            f"(last at {inbound.isoformat()}): send a template"
        )
    return None


def body(content: WhatsAppContent, number: str, callback_data: str | None) -> dict[str, Any]:
    """The Cloud API's message object."""
    message: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": number,
    }
    if content.text is not None:
        message |= {"type": "text", "text": {"preview_url": False, "body": content.text}}
    else:
        template: dict[str, Any] = {
            "name": content.template,
            "language": {"code": (content.language or "").replace("-", "_")},
        }
        if content.parameters:
            parameters = [{"type": "text", "text": text} for text in content.parameters]
            template["components"] = [{"type": "body", "parameters": parameters}]
        message |= {"type": "template", "template": template}
    if callback_data is not None:
        message["biz_opaque_callback_data"] = callback_data
    return message


class WhatsAppAdapter:
    channels = frozenset({"whatsapp"})

    def __init__(self, settings: Settings, retries: Retries | None = None) -> None:
        self._settings = settings
        self._token = secret(settings.whatsapp_access_token, settings.whatsapp_access_token_file)
        if not self._token:
            raise ValueError(
                "WhatsApp needs REACH_WHATSAPP_ACCESS_TOKEN or REACH_WHATSAPP_ACCESS_TOKEN_FILE"
            )
        self._path = (
            f"/{settings.whatsapp_api_version}/{settings.whatsapp_phone_number_id}/messages"
        )
        self._retries = retries or Retries()
        self._client: httpx.AsyncClient | None = None
        self._references: References | None = None
        self.sent = Sent()

    async def start(self) -> None:
        if self._client is None:
            self._client = client(
                self._settings.whatsapp_base_url.rstrip("/"),
                headers={"Authorization": f"Bearer {self._token}"},
            )

    async def stop(self) -> None:
        held, self._client = self._client, None
        if held is not None:
            await held.aclose()

    def _callback_data(self, reference: Reference) -> str | None:
        if self._references is None:
            self._references = References(tracking_key(self._settings))
        made = self._references.make(reference)
        return made if len(made) <= MAX_CALLBACK_DATA else None

    async def deliver(self, message: Message) -> Result:
        rendered = message.content
        if rendered is None or not isinstance(rendered.content, WhatsAppContent):
            return Result(Outcome("failed", "no WhatsApp content to send"))
        content = rendered.content
        targets = numbers(message)
        if not targets:
            return Result(Outcome("failed", "the user has no phone number opted in to WhatsApp"))
        if content.text is not None:
            closed = outside_window(message)
            if closed is not None:
                return Result(Outcome("failed", closed))
        await self.start()
        command = message.command
        answers = Answers()
        for device, number in targets:
            if (command.command_id, device) in self.sent:
                answers.accepted.append(device)
                continue
            reference = Reference(command.command_id, command.user_id, "whatsapp", device)
            payload = body(content, number, self._callback_data(reference))
            try:
                await self._one(command.command_id, device, payload, answers)
            except ProviderUnavailable as fault:
                # The numbers found dead before this one are unregistered still.
                raise fault.with_unregistered(answers.unregistered) from fault
        return answers.result(datetime.now(UTC))

    async def _one(
        self, command_id: str, device: str, payload: dict[str, Any], answers: Answers
    ) -> None:
        assert self._client is not None
        http, path = self._client, self._path
        response = await send(lambda: http.post(path, json=payload), self._retries, "WhatsApp API")
        if response.is_success:
            self.sent.add((command_id, device))
            answers.accepted.append(device)
            return
        code, detail = _error(response)
        if code in THROTTLED:
            raise ProviderUnavailable(f"WhatsApp API throttled: {code} {detail}")
        if code == REENGAGEMENT:
            reason = (
                f"{code} more than 24 hours since the user's last message: "
                "re-engage with a template"
            )
        else:
            reason = f"{code or response.status_code} {detail}".strip()
        answers.failures.append(reason)
        log.info("%s: WhatsApp refused: %s", command_id, reason)


def _error(response: httpx.Response) -> tuple[int | None, str]:
    """The Graph API's ``{"error": {"code": ..., "message": ..., "error_data": ...}}``."""
    try:
        found = response.json()
    except ValueError:
        return None, response.text[:200]
    error = found.get("error") if isinstance(found, dict) else None
    if not isinstance(error, dict):
        return None, ""
    code = error.get("code")
    detail = str(error.get("message") or "")
    data = error.get("error_data")
    if isinstance(data, dict) and data.get("details"):
        detail = f"{detail}: {data['details']}"
    return (code if isinstance(code, int) else None), detail[:500]
