"""SMS and in-app end to end: a system whose SMS goes to a Twilio-shaped server on
loopback and whose in-app messages are kept for apps. A journey texts the user, then
leaves an in-app message; the provider's signed status callback comes back as
feedback, and so does the app's impression of the in-app message."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from yarl import URL

from client.system import send_tick
from schemas.values import parse_timestamp
from streams.settings import Settings
from streams.topics import Topics
from tests.fakes.messaging import SID, TOKEN, FakeTwilio, running_in_thread
from tests.integration.seed_campaign import rows
from worker.supervisor import SystemProcess

pytestmark = pytest.mark.integration

TOPICS = Topics.from_settings(Settings())
START = "2026-11-02T09:00:00Z"
PHONE = "+14155550101"
SEGMENT = {"id": "has-phone", "name": "Has a phone", "expression": 'T("Phone", string, exists)'}
PRESETS: list[dict[str, Any]] = [
    {
        "id": "order-text",
        "name": "Order (SMS)",
        "channel": "sms",
        "content": {"text": "Hi {{tag.First Name}}, your order shipped", "max_segments": 1},
    },
    {
        "id": "order-inapp",
        "name": "Order (in-app)",
        "channel": "in_app",
        "content": {
            "title": "Your order shipped, {{tag.First Name}}",
            "buttons": [{"label": "Track", "link": "shop://orders/{{property.order}}"}],
        },
    },
]
JOURNEY = {
    "id": "order-shipped",
    "name": "Order shipped",
    "entries": [{"kind": "api"}],
    "start": "sms",
    "nodes": [
        {
            "id": "sms",
            "type": "message",
            "channel": "sms",
            "preset": "order-text",
            "next": {"next": "inapp"},
        },
        {
            "id": "inapp",
            "type": "message",
            "channel": "in_app",
            "preset": "order-inapp",
            "next": {"next": "done"},
        },
        {"id": "done", "type": "exit"},
    ],
}


@pytest.fixture(scope="module")
def twilio() -> Iterator[FakeTwilio]:
    fake = FakeTwilio()
    with running_in_thread(fake):
        yield fake


@pytest.fixture(scope="module")
def messaging(
    tmp_path_factory: pytest.TempPathFactory, twilio: FakeTwilio
) -> Iterator[SystemProcess]:
    folder = tmp_path_factory.mktemp("messaging")
    env = {
        "REACH_HTTP_PORT": "0",
        "REACH_PARTITIONS": "2",
        "REACH_CLOCK": "simulated",
        "REACH_PROJECTION_FLUSH_SECONDS": "0.2",
        "REACH_TWILIO_ACCOUNT_SID": SID,
        "REACH_TWILIO_AUTH_TOKEN": TOKEN,
        "REACH_TWILIO_FROM": "+15005550006",
        "REACH_TWILIO_BASE_URL": twilio.url,
        "REACH_INAPP": "true",
    }
    with SystemProcess(folder, env) as running:
        yield running


async def wait_for(found: list[Any], count: int, timeout: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while len(found) < count:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{len(found)} of {count} arrived")
        await asyncio.sleep(0.1)


def test_sms_and_in_app_through_the_providers(messaging: SystemProcess, twilio: FakeTwilio) -> None:
    api = messaging.http
    settings = Settings(data_dir=messaging.data_dir)

    async def scenario() -> None:
        await send_tick(settings, TOPICS.clock, parse_timestamp(START))
        tags = {"user_id": "ana", "timestamp": START, "tags": {"Phone": PHONE, "First Name": "Ana"}}
        assert (await api.call("POST", "/v1/segments", [SEGMENT]))[0] == 200
        assert (await api.call("POST", "/v1/tags", [tags]))[0] == 200
        await rows(api, "SELECT user_id FROM segment_memberships", 1)
        assert (await api.call("POST", "/v1/presets", PRESETS))[0] == 200
        assert (await api.call("POST", "/v1/journeys", JOURNEY))[0] == 200
        assert (await api.call("POST", "/v1/journeys/order-shipped/launch"))[0] == 200
        entry = {"users": [{"user_id": "ana", "properties": {"order": "A-17"}}]}
        status, body = await api.call("POST", "/v1/journeys/order-shipped/entries", entry)
        assert status == 200, body

        await wait_for(twilio.delivered, 1)
        [sent] = twilio.delivered
        assert twilio.refused == []
        assert (sent["To"], sent["Body"]) == (PHONE, "Hi Ana, your order shipped")
        assert URL(sent["StatusCallback"]).path == "/t/sms/status"
        assert sent["StatusCallback"].startswith(api.url)
        # The provider reports it undelivered, signed: bounced feedback.
        assert await twilio.report(sent, "undelivered", "30003") == 200

        # The app reads its user's messages and reports the impression.
        messages: list[Any] = []
        deadline = asyncio.get_running_loop().time() + 60
        while not messages and asyncio.get_running_loop().time() < deadline:
            status, body = await api.call("GET", "/v1/users/ana/inapp")
            assert status == 200, body
            messages = body["messages"]
            await asyncio.sleep(0.1)
        [shown] = messages
        assert shown["title"] == "Your order shipped, Ana"
        assert shown["buttons"] == [
            {"label": "Track", "action": "open", "link": "shop://orders/A-17"}
        ]
        command = shown["command_id"]
        status, body = await api.call("POST", f"/v1/users/ana/inapp/{command}/impression")
        assert (status, body["reported"]) == (200, "opened")

        feedback = await rows(
            api,
            "SELECT channel, toString(status), reason FROM feedback FINAL "
            "WHERE user_id = 'ana' ORDER BY channel, status",
            4,
        )
        assert sorted(tuple(row) for row in feedback) == [
            ("in_app", "delivered", ""),
            ("in_app", "opened", ""),
            ("sms", "bounced", "undelivered: error 30003"),
            ("sms", "delivered", ""),
        ]
        # A forged callback is refused.
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                sent["StatusCallback"],
                data={"MessageStatus": "failed"},
                headers={"X-Twilio-Signature": "forged"},
            ) as answer,
        ):
            assert answer.status == 403

    asyncio.run(scenario())
