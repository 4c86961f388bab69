"""What the provider channels share (push, web push, SMS, WhatsApp): credentials from
settings or files, ``Retry-After``, tries with back-off, a rate limit per provider, the
signed reference a status callback brings back, and one result from the answers for
each of a command's devices.

Retries: a call the provider answers "later" (429, 5xx, unavailable) is tried again
within the delivery, waiting what ``Retry-After`` says (else a first wait, doubling).
A ``Retry-After`` longer than the adapter's longest wait, or the tries running out,
ends the delivery with ``ProviderUnavailable``: it carries the wait the provider asked
for and the devices the provider said are gone meanwhile. The delivery worker retries
the whole command later, not before that wait (its ledger's back-off otherwise), and
unregisters those devices at once. A push device still pending once another device of
the command was accepted leaves the command delivered, the pending device named in the
reason.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ssl
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Literal

import httpx
import orjson
from pydantic import SecretStr

from delivery.channels import Later, Outcome, Result
from delivery.ledger import TokenBucket

TIMEOUT = 30.0
MAX_REASON = 1000

# --- faults and credentials ---------------------------------------------------------------


class CredentialsError(ValueError):
    """Credentials missing or of the wrong shape; the message names no secret."""


class ProviderUnavailable(RuntimeError):
    """The provider answered "later" (429, 5xx, or not at all) and nothing of the
    command was delivered: the worker retries the command later.

    ``retry_after``: the seconds the provider asked to wait (``Retry-After``), if it
    did; ``unregistered``: the ids of the devices it said are gone in this attempt."""

    def __init__(
        self,
        message: str,
        retry_after: float | None = None,
        unregistered: Iterable[str] = (),
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.unregistered: tuple[str, ...] = tuple(dict.fromkeys(unregistered))

    def with_unregistered(self, devices: Iterable[str]) -> ProviderUnavailable:
        """The same fault, naming ``devices`` as gone as well."""
        return ProviderUnavailable(str(self), self.retry_after, (*self.unregistered, *devices))


def secret(value: SecretStr | None, file: Path | None) -> str:
    """A credential: the setting's value, else the first line of the file it names."""
    if value is not None and value.get_secret_value():
        return value.get_secret_value()
    if file is not None:
        return file.read_text(encoding="utf-8").strip()
    return ""


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date, ``now`` in epoch
    seconds); None without it or if unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    current = time.time() if now is None else now
    return max(0.0, moment.timestamp() - current)


# --- rate limits --------------------------------------------------------------------------


class Pacer:
    """A provider's rate limit (sends per second); None: unlimited."""

    def __init__(self, rate: float | None) -> None:
        self._bucket = TokenBucket(rate) if rate else None

    async def __call__(self) -> None:
        if self._bucket is not None:
            wait = self._bucket.take(time.monotonic())
            if wait > 0:
                await asyncio.sleep(wait)


# --- HTTP and tries -----------------------------------------------------------------------


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
        asked = retry_after(response.headers.get("Retry-After"))
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


def tls_context(ca_file: object | None) -> ssl.SSLContext:
    """The system's CAs, and ``push_ca_file``'s when set."""
    context = ssl.create_default_context()
    if ca_file is not None:
        context.load_verify_locations(str(ca_file))
    return context


def utc_now() -> datetime:
    return datetime.now(UTC)


# --- one device's answer, tried (push) ----------------------------------------------------

Answer = Literal["accepted", "unregistered", "failed", "retry"]


@dataclass(frozen=True, slots=True)
class DeviceResult:
    answer: Answer
    reason: str = ""
    retry_after: float | None = None
    """Seconds the provider asked to wait (``Retry-After``), for ``retry``."""


ACCEPTED = DeviceResult("accepted")


async def tried(
    send: Callable[[], Awaitable[DeviceResult]],
    attempts: int,
    max_wait: float,
    first_wait: float = 0.5,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> DeviceResult:
    """``send`` until it is not ``retry``, at most ``attempts`` times (see the module)."""
    result = DeviceResult("retry", "not tried")
    for attempt in range(attempts):
        result = await send()
        if result.answer != "retry" or attempt == attempts - 1:
            return result
        wait = result.retry_after
        if wait is None:
            wait = first_wait * 2**attempt
        if wait > max_wait:
            return result
        await sleep(wait)
    return result


def combined(answers: Sequence[tuple[str, DeviceResult]]) -> Result:
    """The command's result from each device's (id, answer); raises
    ``ProviderUnavailable`` when none was accepted and one may be later (with the
    longest ``Retry-After`` asked, and the devices said to be gone)."""
    unregistered = tuple(device for device, result in answers if result.answer == "unregistered")
    problems = [
        f"{device}: {result.reason or result.answer}"
        for device, result in answers
        if result.answer != "accepted"
    ]
    if any(result.answer == "accepted" for _, result in answers):
        return Result(Outcome("delivered", "; ".join(problems) or None), (), unregistered)
    later = [result for _, result in answers if result.answer == "retry"]
    if later:
        asked = [result.retry_after for result in later if result.retry_after is not None]
        raise ProviderUnavailable("; ".join(problems), max(asked, default=None), unregistered)
    reason = "; ".join(problems) or "no device to send to"
    return Result(Outcome("failed", reason), (), unregistered)


# --- a command's devices, one result (messaging) ------------------------------------------


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


# --- the reference a status callback brings back ------------------------------------------

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
