"""What the push adapters share: one device's answer, tries with back-off honouring
``Retry-After``, a rate limit per provider, and one outcome from the answers of every
device of a command.

Retries: a device whose provider says "later" (429, 5xx, unavailable) is tried again
within the delivery, up to ``push_attempts`` times, waiting what ``Retry-After`` says
(or 0.5 s doubling). A wait longer than ``push_retry_after_max_seconds``, or the tries
running out, leaves the device pending: if no device of the command was accepted, the
adapter raises and the delivery worker retries the whole command later (its ledger's
back-off); if one was, the command is delivered and the pending devices are named in
the reason.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Literal

from delivery.channels import Outcome, Result
from delivery.ledger import TokenBucket

Answer = Literal["accepted", "unregistered", "failed", "retry"]


@dataclass(frozen=True, slots=True)
class DeviceResult:
    answer: Answer
    reason: str = ""
    retry_after: float | None = None
    """Seconds the provider asked to wait (``Retry-After``), for ``retry``."""


ACCEPTED = DeviceResult("accepted")


class CredentialsError(ValueError):
    """Credentials missing or of the wrong shape; the message names no secret."""


class ProviderUnavailable(RuntimeError):
    """No device of the command was accepted and some may be later: the worker retries."""


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date); None if unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    current = time.time() if now is None else now
    return max(0.0, moment.timestamp() - current)


class Pacer:
    """A provider's rate limit (sends per second); None: unlimited."""

    def __init__(self, rate: float | None) -> None:
        self._bucket = TokenBucket(rate) if rate else None

    async def __call__(self) -> None:
        if self._bucket is not None:
            wait = self._bucket.take(time.monotonic())
            if wait > 0:
                await asyncio.sleep(wait)


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
    ``ProviderUnavailable`` when none was accepted and one may be later."""
    unregistered = tuple(device for device, result in answers if result.answer == "unregistered")
    problems = [
        f"{device}: {result.reason or result.answer}"
        for device, result in answers
        if result.answer != "accepted"
    ]
    if any(result.answer == "accepted" for _, result in answers):
        return Result(Outcome("delivered", "; ".join(problems) or None), (), unregistered)
    if any(result.answer == "retry" for _, result in answers):
        raise ProviderUnavailable("; ".join(problems))
    reason = "; ".join(problems) or "no device to send to"
    return Result(Outcome("failed", reason), (), unregistered)


def utc_now() -> datetime:
    return datetime.now(UTC)


def tls_context(ca_file: object | None) -> ssl.SSLContext:
    """The system's CAs, and ``push_ca_file``'s when set."""
    context = ssl.create_default_context()
    if ca_file is not None:
        context.load_verify_locations(str(ca_file))
    return context
