"""The webhook adapter against a real local HTTP server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from aiohttp import web

from delivery.channels import Message
from delivery.render import RenderedContent
from delivery.webhook import WebhookAdapter, WebhookUnavailable
from schemas.commands import SendCommand
from schemas.presets import PushContent
from streams.settings import Settings


@dataclass
class Receiver:
    """Answers each POST with the next of ``statuses`` (the last one from then on)."""

    statuses: list[int] = field(default_factory=lambda: [200])
    received: list[tuple[dict[str, str], dict[str, Any]]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((dict(request.headers), orjson.loads(await request.read())))
        status = self.statuses[min(len(self.received), len(self.statuses)) - 1]
        return web.Response(status=status)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    app = web.Application()
    app.router.add_post("/hook", found.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    found.url = f"http://127.0.0.1:{port}/hook"
    yield found
    await runner.cleanup()


@pytest.fixture
async def adapter() -> AsyncIterator[WebhookAdapter]:
    # The receivers listen on loopback, which only the allow-list opens.
    settings = Settings(webhook_timeout_seconds=2, webhook_allow="127.0.0.1")
    webhook = WebhookAdapter(settings, attempts=3, first_wait=0.01)
    await webhook.start()
    yield webhook
    await webhook.stop()


@pytest.fixture
async def fenced() -> AsyncIterator[WebhookAdapter]:
    """The adapter with the default settings: no internal address allowed."""
    webhook = WebhookAdapter(Settings(webhook_timeout_seconds=2), attempts=3, first_wait=0.01)
    await webhook.start()
    yield webhook
    await webhook.stop()


def command(url: str | None, **fields: Any) -> SendCommand:
    values: dict[str, Any] = {
        "command_id": "j:1:r:hook:1:0123456789abcdef",
        "user_id": "u1",
        "channel": "webhook",
        "url": url,
        "journey_id": "j",
        "journey_version": 1,
        "run": "r",
        "step": "hook",
        "visit": 1,
        "at": datetime(2026, 12, 10, 8, tzinfo=UTC),
        "properties": {"plan": "gold"},
        "tags": {"First Name": "Ana"},
    }
    return SendCommand.model_validate(values | fields)


async def test_posts_the_command_with_its_id_as_idempotency_key(
    receiver: Receiver, adapter: WebhookAdapter
) -> None:
    sent = command(receiver.url)
    result = await adapter.deliver(Message(sent, None))
    assert result.outcome.status == "delivered"
    assert result.later == ()
    [(headers, body)] = receiver.received
    assert headers["Idempotency-Key"] == sent.command_id
    assert headers["Content-Type"] == "application/json"
    assert body == sent.model_dump(mode="json")
    assert "content" not in body


async def test_rendered_content_goes_along(receiver: Receiver, adapter: WebhookAdapter) -> None:
    content = RenderedContent(
        preset_id="hello",
        version=2,
        channel="push",
        language=None,
        content=PushContent(title="Hi Ana", body="Welcome"),
    )
    await adapter.deliver(Message(command(receiver.url), content))
    [(_, body)] = receiver.received
    assert body["content"]["content"] == {
        "channel": "push",
        "title": "Hi Ana",
        "body": "Welcome",
        "deep_link": None,
        "image": None,
        "badge": None,
        "sound": None,
        "data": {},
        "collapse_id": None,
        "ttl_seconds": None,
        "priority": "high",
    }
    assert (body["content"]["preset_id"], body["content"]["version"]) == ("hello", 2)


async def test_a_5xx_is_retried_with_the_same_key_until_it_succeeds(
    receiver: Receiver, adapter: WebhookAdapter
) -> None:
    receiver.statuses = [500, 503, 204]
    result = await adapter.deliver(Message(command(receiver.url), None))
    assert result.outcome.status == "delivered"
    assert len(receiver.received) == 3
    assert len({headers["Idempotency-Key"] for headers, _ in receiver.received}) == 1


async def test_still_failing_after_every_attempt_raises_for_the_worker_to_retry(
    receiver: Receiver, adapter: WebhookAdapter
) -> None:
    receiver.statuses = [502]
    with pytest.raises(WebhookUnavailable, match="webhook answered 502"):
        await adapter.deliver(Message(command(receiver.url), None))
    assert len(receiver.received) == 3


async def test_a_4xx_fails_at_once_naming_the_status(
    receiver: Receiver, adapter: WebhookAdapter
) -> None:
    receiver.statuses = [404]
    result = await adapter.deliver(Message(command(receiver.url), None))
    assert (result.outcome.status, result.outcome.reason) == ("failed", "webhook answered 404")
    assert len(receiver.received) == 1


async def test_too_many_requests_is_retried(receiver: Receiver, adapter: WebhookAdapter) -> None:
    receiver.statuses = [429, 200]
    result = await adapter.deliver(Message(command(receiver.url), None))
    assert result.outcome.status == "delivered"
    assert len(receiver.received) == 2


async def test_a_connection_refused_is_retried_then_raises(adapter: WebhookAdapter) -> None:
    with pytest.raises(WebhookUnavailable, match="3 attempts"):
        await adapter.deliver(Message(command("http://127.0.0.1:9/hook"), None))


async def test_a_command_without_a_usable_url_fails(adapter: WebhookAdapter) -> None:
    missing = await adapter.deliver(Message(command(None), None))
    assert missing.outcome.reason == "webhook command without a url"
    wrong = await adapter.deliver(Message(command("ftp://example.com/x"), None))
    assert wrong.outcome.status == "failed"
    assert "not an http(s) URL" in (wrong.outcome.reason or "")


def _port(receiver: Receiver) -> int:
    return int(receiver.url.split(":")[2].split("/")[0])


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "localhost",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "0x7f000001",
        "0.0.0.0",
        "127.1",
        "2130706433",
    ],
)
async def test_loopback_destinations_are_refused_without_a_request(
    receiver: Receiver, fenced: WebhookAdapter, host: str
) -> None:
    result = await fenced.deliver(Message(command(f"http://{host}:{_port(receiver)}/hook"), None))
    assert result.outcome.status == "failed"
    assert receiver.received == []


async def test_a_refusal_says_the_same_for_an_open_and_a_closed_port(
    receiver: Receiver, fenced: WebhookAdapter
) -> None:
    open_port = await fenced.deliver(Message(command(receiver.url), None))
    closed = await fenced.deliver(Message(command("http://127.0.0.1:9/hook"), None))
    assert open_port.outcome.reason == "destination 127.0.0.1 is not a public address " + (
        "(see REACH_WEBHOOK_ALLOW)"
    )
    assert closed.outcome == open_port.outcome
    assert receiver.received == []


async def test_an_allow_entry_with_another_port_does_not_open_the_receiver(
    receiver: Receiver,
) -> None:
    settings = Settings(webhook_allow=f"127.0.0.1:{_port(receiver) + 1},10.0.0.0/8")
    webhook = WebhookAdapter(settings, attempts=1)
    try:
        result = await webhook.deliver(Message(command(receiver.url), None))
    finally:
        await webhook.stop()
    assert result.outcome.status == "failed"
    assert receiver.received == []
    allowed = WebhookAdapter(Settings(webhook_allow=f"127.0.0.1:{_port(receiver)}"))
    try:
        result = await allowed.deliver(Message(command(receiver.url), None))
    finally:
        await allowed.stop()
    assert result.outcome.status == "delivered"


async def test_redirects_are_not_followed(receiver: Receiver, adapter: WebhookAdapter) -> None:
    receiver.statuses = [302]
    result = await adapter.deliver(Message(command(receiver.url), None))
    assert (result.outcome.status, result.outcome.reason) == ("failed", "webhook answered 302")
    assert len(receiver.received) == 1
