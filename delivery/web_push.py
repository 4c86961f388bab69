"""Web Push: RFC 8030 delivery, RFC 8291 payload encryption (``aes128gcm``) and RFC
8292 VAPID authentication, with ``pywebpush``/``py-vapid``.

The payload (delivery/push_payload.py) is encrypted for the subscription's keys and
POSTed to its endpoint with ``TTL``, ``Urgency`` and ``Topic`` and a VAPID
``Authorization`` (a JWT for the endpoint's origin, valid 12 hours, made again with an
hour left). Endpoints are fenced as webhooks are (streams/outbound.py): an endpoint
that is not a public address, unless ``REACH_WEBHOOK_ALLOW`` lists it, fails.

Answers: 201/200/202 accepted; 404, 410 -> the subscription is gone; 413 -> failed
(too large); 429, 5xx -> later; other 4xx -> failed.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02
from pywebpush import WebPusher

from delivery.provider import ACCEPTED, CredentialsError, DeviceResult, retry_after
from schemas.devices import WebPushSubscription
from schemas.presets import WebPushContent
from streams.outbound import Address, AllowEntry, DestinationRefused, admitted, parse_address
from streams.settings import Settings

VAPID_LIFETIME = 12 * 3600
DEFAULT_TTL = 86_400
"""Seconds a push service keeps a message for an offline browser, unless the preset
says otherwise."""


def vapid_key(settings: Settings) -> Vapid02:
    """The VAPID private key (PEM, or the base64url raw/DER form), checked."""
    if settings.vapid_private_key_file is not None:
        try:
            text = Path(settings.vapid_private_key_file).read_text()
        except OSError as error:
            raise CredentialsError(f"VAPID key file: {error.strerror}") from None
    else:
        text = settings.vapid_private_key.get_secret_value()
    try:
        if "-----BEGIN" in text:
            vapid = Vapid02.from_pem(text.encode())
        else:
            vapid = Vapid02.from_string(text.strip())
    except Exception:  # py-vapid lets its parsers' errors through, of many kinds
        raise CredentialsError("the VAPID private key does not load") from None
    key = vapid.private_key
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise CredentialsError("the VAPID key is not an EC P-256 key")
    subject = settings.vapid_subject
    if not subject.startswith(("mailto:", "https://")):
        raise CredentialsError("the VAPID subject is a mailto: or https: URL")
    return vapid


def subscription_from_address(address: str) -> WebPushSubscription | None:
    """A ``PushSubscription`` JSON (``{"endpoint", "keys": {"p256dh", "auth"}}``) held in
    a tag, as a subscription; None if it is not one."""
    try:
        value = json.loads(address)
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    keys = value.get("keys", value)
    try:
        return WebPushSubscription(
            endpoint=value.get("endpoint"), p256dh=keys.get("p256dh"), auth=keys.get("auth")
        )
    except (ValueError, AttributeError):
        return None


def encrypt(subscription: WebPushSubscription, data: bytes) -> bytes:
    info = {
        "endpoint": subscription.endpoint,
        "keys": {"p256dh": subscription.p256dh, "auth": subscription.auth},
    }
    body = WebPusher(info).encode(data, content_encoding="aes128gcm")["body"]
    return bytes(body)


class WebPushClient:
    def __init__(
        self,
        vapid: Vapid02,
        subject: str,
        http: httpx.AsyncClient,
        allow: Iterable[AllowEntry] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.vapid = vapid
        self.subject = subject
        self.http = http
        self.allow = tuple(allow)
        self.clock = clock
        self._headers: dict[str, tuple[str, float]] = {}

    def authorization(self, audience: str) -> str:
        now = self.clock()
        cached = self._headers.get(audience)
        if cached is None or cached[1] - now < 3600:
            expires = int(now) + VAPID_LIFETIME
            claims = {"aud": audience, "sub": self.subject, "exp": expires}
            header = str(self.vapid.sign(claims)["Authorization"])
            self._headers[audience] = cached = (header, float(expires))
        return cached[0]

    async def fenced(self, host: str, port: int) -> str | None:
        """Why the endpoint's host may not be reached (None: it may)."""
        literal = parse_address(host)
        try:
            if literal is not None:
                addresses: list[Address | None] = [literal]
            else:
                found = await asyncio.get_running_loop().getaddrinfo(
                    host, port, type=socket.SOCK_STREAM
                )
                addresses = [parse_address(str(info[4][0])) for info in found]
        except OSError as error:
            return f"web push endpoint {host}: {error}"
        for address in addresses:
            if address is None or not admitted(address, port, self.allow):
                return str(DestinationRefused(f"web push endpoint {host} is not a public address"))
        return None

    async def send(
        self, subscription: WebPushSubscription, content: WebPushContent, payload: dict[str, Any]
    ) -> DeviceResult:
        parts = urlsplit(subscription.endpoint)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        refused = await self.fenced(host, port)
        if refused is not None:
            return DeviceResult("failed", refused)
        try:
            body = await asyncio.to_thread(encrypt, subscription, orjson.dumps(payload))
        except Exception as error:  # bad keys in the subscription: it cannot be reached
            return DeviceResult(
                "failed", f"web push: the subscription's keys: {type(error).__name__}"
            )
        origin = f"{parts.scheme}://{parts.netloc}"
        headers = {
            "TTL": str(content.ttl_seconds if content.ttl_seconds is not None else DEFAULT_TTL),
            "Content-Encoding": "aes128gcm",
            "Content-Type": "application/octet-stream",
            "Authorization": self.authorization(origin),
        }
        if content.urgency is not None:
            headers["Urgency"] = content.urgency
        if content.topic is not None:
            headers["Topic"] = content.topic
        try:
            response = await self.http.post(subscription.endpoint, content=body, headers=headers)
        except httpx.HTTPError as error:
            return DeviceResult("retry", f"web push: {type(error).__name__}")
        return answer(response)


def answer(response: httpx.Response) -> DeviceResult:
    status = response.status_code
    if status in (200, 201, 202):
        return ACCEPTED
    reason = f"web push {status}"
    if status in (404, 410):
        return DeviceResult("unregistered", reason)
    if status == 413:
        return DeviceResult("failed", f"{reason}: the payload is too large")
    if status == 429 or status >= 500:
        return DeviceResult("retry", reason, retry_after(response.headers.get("retry-after")))
    return DeviceResult("failed", reason)
