"""The webhook channel: a journey's webhook step POSTs its send command (with the
rendered content, when the step names a preset) as JSON to the step's ``url``.

The command id goes in an ``Idempotency-Key`` header: a worker that crashed between
the POST and its ledger's write posts again with the same key, and the receiver can
tell. A 2xx answer is ``delivered``; any other 4xx is a ``failed`` outcome naming the
status (sending again would not help). A 5xx, 408, 429, a timeout or a connection
error is tried again a few times within the call, with doubling waits; then the call
raises, and the worker retries the command later.

Destinations are fenced (streams/outbound.py): an address that is not public, unless
``REACH_WEBHOOK_ALLOW`` lists it, is a ``failed`` outcome before any connection is
tried, whether a literal in the URL or what a name resolves to (the connection goes to
the checked address). Redirects are not followed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
from yarl import URL

from delivery.channels import Message, Outcome, Result
from schemas.commands import WEBHOOK
from streams.outbound import DestinationRefused, FencedResolver, check
from streams.settings import Settings

RETRYABLE = frozenset({408, 429})
"""4xx statuses that say "later", not "never"."""


class WebhookUnavailable(RuntimeError):
    """The receiver did not take the command after every attempt of one call."""


class WebhookAdapter:
    channels = frozenset({WEBHOOK})

    def __init__(self, settings: Settings, attempts: int = 3, first_wait: float = 0.5) -> None:
        self.timeout = aiohttp.ClientTimeout(total=settings.webhook_timeout_seconds)
        self.attempts = attempts
        self.first_wait = first_wait
        self.allow = settings.webhook_allow_list
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None:
            connector = aiohttp.TCPConnector(resolver=FencedResolver(self.allow))
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self.timeout,
                headers={"User-Agent": "reachstream-webhook"},
                trust_env=False,  # no proxy from the environment: it would see no fence
            )

    async def stop(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def deliver(self, message: Message) -> Result:
        command = message.command
        if not command.url:
            return Result(Outcome("failed", "webhook command without a url"))
        try:
            url = URL(command.url)
            if url.scheme not in ("http", "https") or not url.host:
                return Result(Outcome("failed", f"not an http(s) URL: {command.url}"))
            check(url.host, url.port or 0, self.allow)
        except ValueError:
            return Result(Outcome("failed", f"not an http(s) URL: {command.url}"))
        except DestinationRefused as refused:
            return Result(Outcome("failed", str(refused)))
        await self.start()
        assert self._session is not None
        body: dict[str, Any] = command.model_dump(mode="json")
        if message.content is not None:
            body["content"] = message.content.model_dump(mode="json")
        data = orjson.dumps(body)
        headers = {"Content-Type": "application/json", "Idempotency-Key": command.command_id}
        fault = ""
        for attempt in range(self.attempts):
            if attempt:
                await asyncio.sleep(self.first_wait * 2 ** (attempt - 1))
            try:
                async with self._session.post(
                    command.url, data=data, headers=headers, allow_redirects=False
                ) as response:
                    status = response.status
            except (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError):
                return Result(Outcome("failed", f"not an http(s) URL: {command.url}"))
            except aiohttp.ClientConnectorError as error:
                if isinstance(error.os_error, DestinationRefused):
                    return Result(Outcome("failed", str(error.os_error)))
                fault = f"{type(error).__name__}: {error}".rstrip(": ")
                continue
            except (aiohttp.ClientError, TimeoutError) as error:
                fault = f"{type(error).__name__}: {error}".rstrip(": ")
                continue
            if 200 <= status < 300:
                return Result(Outcome("delivered"))
            if status >= 500 or status in RETRYABLE:
                fault = f"webhook answered {status}"
                continue
            return Result(Outcome("failed", f"webhook answered {status}"))
        raise WebhookUnavailable(f"{fault} ({self.attempts} attempts)")
