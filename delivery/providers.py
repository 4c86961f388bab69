"""What the SMS, WhatsApp and in-app channels share: secrets from settings or files,
the HTTP client and its retries (429 and 5xx again within the call, honouring
``Retry-After``), the signed reference a provider's status callback brings back, and
how the answers for each of a command's devices make one result.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path

import httpx
import orjson
from pydantic import SecretStr

from delivery.channels import Later, Outcome, Result

TIMEOUT = 30.0
MAX_REASON = 1000


class ProviderUnavailable(RuntimeError):
    """The provider answered 429 or 5xx (or not at all) on every attempt of one call:
    the worker retries the command later."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def secret(value: SecretStr | None, file: Path | None) -> str:
    """A credential: the setting's value, else the first line of the file it names."""
    if value is not None and value.get_secret_value():
        return value.get_secret_value()
    if file is not None:
        return file.read_text(encoding="utf-8").strip()
    return ""


def retry_after(headers: httpx.Headers, now: datetime | None = None) -> float | None:
    """Seconds ``Retry-After`` asks for (a number, or an HTTP date); None without it."""
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (moment - (now or datetime.now(UTC))).total_seconds())


@dataclass(frozen=True, slots=True)
class Retries:
    attempts: int = 3
    first_wait: float = 0.5
    """Seconds before the second attempt; doubles."""
    longest_wait: float = 10.0
    """A ``Retry-After`` longer than this ends the call at once: the worker retries."""


async def send(
    call: Callable[[], Awaitable[httpx.Response]], retries: Retries, what: str
) -> httpx.Response:
    """The provider's answer that is not 429 or 5xx, after up to ``retries.attempts``
    calls; else raises ``ProviderUnavailable``."""
    fault, asked = "", None
    for attempt in range(retries.attempts):
        if attempt:
            wait = retries.first_wait * 2 ** (attempt - 1)
            await asyncio.sleep(max(wait, asked or 0.0))
        try:
            response = await call()
        except httpx.HTTPError as error:
            fault, asked = f"{what}: {type(error).__name__}: {error}".rstrip(": "), None
            continue
        if response.status_code != 429 and response.status_code < 500:
            return response
        asked = retry_after(response.headers)
        fault = f"{what} answered {response.status_code}"
        if asked is not None and asked > retries.longest_wait:
            raise ProviderUnavailable(f"{fault}, Retry-After {asked:g}s", asked)
    raise ProviderUnavailable(f"{fault} ({retries.attempts} attempts)", asked)


def client(
    base_url: str,
    headers: dict[str, str] | None = None,
    auth: tuple[str, str] | None = None,
) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=TIMEOUT,
        trust_env=False,
        headers={"User-Agent": "reachstream", **(headers or {})},
        auth=auth,
    )


# --- the reference a status callback brings back ----------------------------------------

_DOMAIN = b"reach-provider-callback-v1\0"


@dataclass(frozen=True, slots=True)
class Reference:
    """Which command and device a provider's status callback is about."""

    command_id: str
    user_id: str
    channel: str
    device_id: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class References:
    """Signs and reads references with the tracking key (delivery/tracking_config.py):
    the provider hands them back unchanged, nobody else can make one."""

    def __init__(self, key: bytes) -> None:
        if not key:
            raise ValueError("a key must not be empty")
        self._key = key

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._key, _DOMAIN + payload, hashlib.sha256).digest()[:16]

    def make(self, reference: Reference) -> str:
        payload = orjson.dumps(
            [reference.command_id, reference.user_id, reference.channel, reference.device_id]
        )
        return f"{_b64(payload)}.{_b64(self._sign(payload))}"

    def read(self, token: str) -> Reference | None:
        encoded, dot, signature = token.partition(".")
        if not dot or len(token) > 4096:
            return None
        try:
            payload = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
            presented = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
            if not hmac.compare_digest(presented, self._sign(payload)):
                return None
            fields = orjson.loads(payload)
        except (ValueError, orjson.JSONDecodeError):
            return None
        if (
            not isinstance(fields, list)
            or len(fields) != 4
            or not all(isinstance(item, str) for item in fields)
        ):
            return None
        return Reference(*fields)


# --- a command's devices, one result ------------------------------------------------------


@dataclass(slots=True)
class Answers:
    """What the provider said for each device of one command."""

    accepted: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    unregistered: list[str] = field(default_factory=list)
    unsubscribed: bool = False

    def result(self, now: datetime) -> Result:
        """Delivered when the provider took it for any device; otherwise failed with
        the reasons."""
        later = (Later("unsubscribed", now),) if self.unsubscribed else ()
        gone = tuple(dict.fromkeys(self.unregistered))
        if self.accepted:
            return Result(Outcome("delivered"), later, gone)
        reason = "; ".join(self.failures)[:MAX_REASON] or "not sent"
        return Result(Outcome("failed", reason), later, gone)


class Sent:
    """Devices a provider accepted a command for, in this process (the newest
    ``size``): a retry of the command skips them, for providers that would deliver a
    repeated request twice."""

    def __init__(self, size: int = 100_000) -> None:
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._size = size

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._seen

    def add(self, key: tuple[str, str]) -> None:
        self._seen[key] = None
        self._seen.move_to_end(key)
        while len(self._seen) > self._size:
            self._seen.popitem(last=False)
