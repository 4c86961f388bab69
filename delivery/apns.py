"""Apple Push Notification service over HTTP/2 with token-based authentication.

One HTTP/2 connection per environment (production, sandbox), its streams multiplexed
(``httpx`` with ``http2``); each request carries an ES256 JWT (``kid`` the key id,
``iss`` the team, ``iat``) made again every 40 minutes: APNs refuses one older than an
hour and one made more often than every 20 minutes. Headers: ``apns-topic`` (the
device's app id), ``apns-push-type: alert``, ``apns-priority`` (10 high, 5 normal),
``apns-collapse-id``, ``apns-expiration`` (the command's instant plus the preset's
TTL) and ``apns-id``, a UUID made of the command id and the device id, so a retry of
the same command to the same device carries the same id.

Answers: 200 accepted; 410 (``Unregistered``) and 400 ``BadDeviceToken`` -> the device
is gone; 403 ``ExpiredProviderToken``/``InvalidProviderToken`` -> a new JWT, once;
413 and other 4xx -> failed with APNs' reason; 429 and 5xx -> later.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import jwt
import orjson
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from delivery.provider import ACCEPTED, CredentialsError, DeviceResult, retry_after
from schemas.devices import PushDevice, PushEnvironment
from schemas.presets import PushContent
from streams.settings import Settings

TOKEN_LIFETIME = 40 * 60
"""Seconds a provider token is used: between APNs' 20 minutes and 1 hour."""
APNS_ID_NAMESPACE = uuid.UUID("5b0c1b53-3f55-4f6b-9a0e-6e1b4f2f6a41")
GONE = frozenset({"BadDeviceToken", "Unregistered", "ExpiredToken"})
STALE_JWT = frozenset({"ExpiredProviderToken", "InvalidProviderToken"})


def apns_id(command_id: str, device: str) -> str:
    """The ``apns-id`` of a command's notification to a device: the same on a retry."""
    return str(uuid.uuid5(APNS_ID_NAMESPACE, f"{command_id}\0{device}"))


def signing_key(settings: Settings) -> ec.EllipticCurvePrivateKey:
    """The .p8 key (PEM), from the file or the environment, checked to be P-256."""
    if settings.apns_key_file is not None:
        try:
            pem = Path(settings.apns_key_file).read_bytes()
        except OSError as error:
            raise CredentialsError(f"APNs key file: {error.strerror}") from None
    else:
        pem = settings.apns_key.get_secret_value().encode()
    try:
        key = load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise CredentialsError("the APNs key is not a PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise CredentialsError("the APNs key is not an EC P-256 key")
    if not settings.apns_key_id or not settings.apns_team_id:
        raise CredentialsError("APNs needs the key id and the team id")
    return key


@dataclass(frozen=True, slots=True)
class ApnsConfig:
    key: ec.EllipticCurvePrivateKey
    key_id: str
    team_id: str
    production_url: str
    sandbox_url: str


def apns_config(settings: Settings) -> ApnsConfig:
    return ApnsConfig(
        signing_key(settings),
        settings.apns_key_id,
        settings.apns_team_id,
        settings.apns_production_url.rstrip("/"),
        settings.apns_sandbox_url.rstrip("/"),
    )


def http2_client(
    base_url: str, timeout: float, verify: ssl.SSLContext | bool = True
) -> httpx.AsyncClient:
    """One HTTP/2 connection (prior knowledge on http://, ALPN on https://)."""
    return httpx.AsyncClient(
        base_url=base_url,
        verify=verify,
        http1=False,
        http2=True,
        timeout=timeout,
        limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        trust_env=False,
    )


class ApnsClient:
    def __init__(
        self,
        config: ApnsConfig,
        timeout: float,
        verify: ssl.SSLContext | bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.verify = verify
        self.timeout = timeout
        self.clock = clock
        self._token: tuple[str, float] | None = None
        self._clients: dict[PushEnvironment, httpx.AsyncClient] = {}
        self.tokens_made = 0

    def provider_token(self, refused: str | None = None) -> str:
        """The JWT to send; a new one when it is 40 minutes old, or when APNs refused
        ``refused`` and it is still the current one (requests refused at once with the
        same token make one new token, not one each)."""
        now = self.clock()
        stale = refused is not None and self._token is not None and self._token[0] == refused
        if stale or self._token is None or now - self._token[1] >= TOKEN_LIFETIME:
            issued = int(now)
            token = jwt.encode(
                {"iss": self.config.team_id, "iat": issued},
                self.config.key,
                algorithm="ES256",
                headers={"kid": self.config.key_id},
            )
            self._token = (token, now)
            self.tokens_made += 1
        return self._token[0]

    def client(self, environment: PushEnvironment) -> httpx.AsyncClient:
        found = self._clients.get(environment)
        if found is None:
            base = (
                self.config.sandbox_url
                if environment == PushEnvironment.SANDBOX
                else self.config.production_url
            )
            found = self._clients[environment] = http2_client(base, self.timeout, self.verify)
        return found

    async def close(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        await asyncio.gather(*(client.aclose() for client in clients))

    async def send(
        self,
        device: PushDevice,
        payload: dict[str, object],
        content: PushContent,
        notification_id: str,
        sent_at: float,
    ) -> DeviceResult:
        headers = {
            "apns-topic": device.app_id,
            "apns-push-type": "alert",
            "apns-priority": "10" if content.priority == "high" else "5",
            "apns-id": notification_id,
        }
        if content.collapse_id is not None:
            headers["apns-collapse-id"] = content.collapse_id
        if content.ttl_seconds is not None:
            headers["apns-expiration"] = str(int(sent_at) + content.ttl_seconds)
        body = orjson.dumps(payload)
        client = self.client(device.environment)
        result = DeviceResult("retry", "APNs: not sent")
        refused: str | None = None
        for _ in range(2):
            token = self.provider_token(refused)
            headers["authorization"] = f"bearer {token}"
            try:
                response = await client.post(
                    f"/3/device/{quote(device.token, safe='')}", content=body, headers=headers
                )
            except httpx.HTTPError as error:
                return DeviceResult("retry", f"APNs: {type(error).__name__}")
            result = answer(response)
            if not (response.status_code == 403 and _reason(response) in STALE_JWT):
                break
            refused = token
        return result


def _reason(response: httpx.Response) -> str:
    try:
        return str(response.json().get("reason", ""))
    except ValueError:
        return ""


def answer(response: httpx.Response) -> DeviceResult:
    status = response.status_code
    if status == 200:
        return ACCEPTED
    why = _reason(response)
    reason = f"APNs {status} {why}".rstrip()
    if status == 410 or (status == 400 and why in GONE):
        return DeviceResult("unregistered", reason)
    if status == 429 or status >= 500:
        return DeviceResult("retry", reason, retry_after(response.headers.get("retry-after")))
    if status == 403 and why in STALE_JWT:
        return DeviceResult("retry", reason)
    return DeviceResult("failed", reason)
