"""Push end to end: the seed's "flight changed" journey (push, then email to who did
not open it within 30 minutes) on a system whose push goes to a local FCM fake (OAuth
token and message schema checked) and whose email goes to a local SMTP server. The
users' push tokens are ``Push Token`` tags (FCM registration tokens); one of them is
gone, as FCM says with ``UNREGISTERED``."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from benchmarks.push_fakes import Fakes, fcm_error, push_fakes
from client.system import send_tick
from schemas.values import parse_timestamp
from streams.settings import Settings
from streams.topics import Topics
from tests.integration.seed_campaign import define_workspace, rows, seed_journeys
from tests.smtp_server import SmtpServer, running_smtp_server
from worker.supervisor import SystemProcess

pytestmark = pytest.mark.integration

TOPICS = Topics.from_settings(Settings())
START = "2026-11-02T09:00:00Z"
JOURNEY = "follow-up-push-email"
TOKENS = {"ana": "fcm-token-of-ana", "bo": "fcm-token-of-bo"}
SEGMENTS = [
    {
        "id": "has-push-token",
        "name": "Has a push token",
        "expression": 'T("Push Token", string, exists)',
    },
    {
        "id": "has-web-push",
        "name": "Has a web push subscription",
        "expression": 'T("Web Push Token", string, exists)',
    },
]
BROWSER_USER = "cy"
WEB_PRESET = {
    "id": "flight-changed-web",
    "name": "Flight changed (web push)",
    "channel": "web_push",
    "content": {
        "title": "Flight changed: {{property.flight|your trip}}",
        "body": "New departure time: {{property.departure|see the site}}.",
        "url": "https://reach.example/trips/{{property.booking|latest}}",
        "urgency": "high",
    },
}
WEB_JOURNEY = {
    "id": "flight-changed-web",
    "name": "Flight changed (web push)",
    "entries": [{"kind": "trigger", "match": {"event": "FlightChanged"}}],
    "start": "web",
    "nodes": [
        {
            "id": "web",
            "type": "message",
            "channel": "web_push",
            "preset": "flight-changed-web",
            "next": {"next": "done"},
        },
        {"id": "done", "type": "exit"},
    ],
}


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpServer]:
    yield from running_smtp_server()


@pytest.fixture(scope="module")
def fakes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fakes]:
    with push_fakes(tmp_path_factory.mktemp("push-fakes")) as started:
        yield started


@pytest.fixture(scope="module")
def pushing(
    tmp_path_factory: pytest.TempPathFactory, smtp: SmtpServer, fakes: Fakes
) -> Iterator[SystemProcess]:
    folder = tmp_path_factory.mktemp("push")
    env = {
        f"REACH_{name.upper()}": str(value)
        for name, value in fakes.settings.items()
        if name != "data_dir"
    }
    env.update(
        {
            "REACH_HTTP_PORT": "0",
            "REACH_PARTITIONS": "2",
            "REACH_CLOCK": "simulated",
            "REACH_PROJECTION_FLUSH_SECONDS": "0.2",
            "REACH_SMTP_HOST": smtp.host,
            "REACH_SMTP_PORT": str(smtp.port),
        }
    )
    with SystemProcess(folder, env) as running:
        yield running


async def accepted(fakes: Fakes, token: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [message for message in fakes.fcm.accepted if message["token"] == token]
        if found:
            return found[0]
        await asyncio.sleep(0.1)
    raise AssertionError(f"FCM got nothing for {token}")


def test_the_seed_push_then_email_journey_through_the_fakes(
    pushing: SystemProcess, fakes: Fakes, smtp: SmtpServer
) -> None:
    api = pushing.http
    settings = Settings(data_dir=pushing.data_dir)
    fakes.fcm.script(TOKENS["bo"], fcm_error(404, "NOT_FOUND", "UNREGISTERED"))

    async def scenario() -> None:
        status, body = await api.call("GET", "/v1/status")
        assert status == 200
        assert body["channels"]["push"] == "delivery.push.PushAdapter"
        assert body["channels"]["sms"] == "simulated"
        await send_tick(settings, TOPICS.clock, parse_timestamp(START))
        await define_workspace(api)
        assert (await api.call("POST", "/v1/segments", SEGMENTS))[0] == 200
        tags = [
            {
                "user_id": user,
                "timestamp": START,
                "tags": {"Push Token": token, "Email": f"{user}@example.com"},
            }
            for user, token in TOKENS.items()
        ]
        # A browser's PushSubscription JSON in a tag, as kept before the device registry.
        subscription = fakes.web_push.subscribe()
        keys = {"p256dh": subscription.p256dh, "auth": subscription.auth}
        web_tag = json.dumps({"endpoint": subscription.endpoint, "keys": keys})
        tags.append(
            {"user_id": BROWSER_USER, "timestamp": START, "tags": {"Web Push Token": web_tag}}
        )
        assert (await api.call("POST", "/v1/tags", tags))[0] == 200
        await rows(api, "SELECT user_id FROM segment_memberships", 3)
        assert (await api.call("POST", "/v1/presets", [WEB_PRESET]))[0] == 200
        [journey] = [j for j in seed_journeys() if j["id"] == JOURNEY]
        for definition in (journey, WEB_JOURNEY):
            assert (await api.call("POST", "/v1/journeys", definition))[0] == 200
            launched = f"/v1/journeys/{definition['id']}/launch"
            assert (await api.call("POST", launched))[0] == 200
        changed = [
            {
                "user_id": user,
                "name": "FlightChanged",
                "timestamp": "2026-11-02T09:00:01Z",
                "attributes": {"flight": "TP 1234", "departure": "18:40", "booking": "B7"},
            }
            for user in [*TOKENS, BROWSER_USER]
        ]
        assert (await api.call("POST", "/v1/events", changed))[0] == 200

        message = await accepted(fakes, TOKENS["ana"])
        assert message["notification"] == {
            "title": "Flight changed: TP 1234",
            "body": "New departure time: 18:40. Tap for details.",
        }
        assert message["data"] == {"deep_link": "reach://trips/B7"}
        feedback = await rows(
            api,
            "SELECT user_id, toString(status), reason FROM feedback FINAL "
            "WHERE channel = 'push' ORDER BY user_id",
            2,
            timeout=60,
        )
        by_user = {row[0]: (row[1], row[2]) for row in feedback}
        assert by_user["ana"][0] == "delivered"
        assert by_user["bo"][0] == "failed"
        assert "UNREGISTERED" in by_user["bo"][1]

        # The browser's push service got the web push, encrypted for its keys.
        deadline = time.monotonic() + 60
        name = subscription.endpoint.rsplit("/", 1)[1]
        got: list[dict[str, Any]] = []
        while not got and time.monotonic() < deadline:
            got = [r for r in fakes.web_push.received if r["subscription"] == name]
            await asyncio.sleep(0.1)
        assert got, fakes.web_push.refused
        assert got[0]["payload"] == {
            "title": "Flight changed: TP 1234",
            "body": "New departure time: 18:40.",
            "url": "https://reach.example/trips/B7",
        }
        assert got[0]["headers"]["urgency"] == "high"

        # Half an hour on, Ana has not opened the push: the email follows.
        await send_tick(settings, TOPICS.clock, parse_timestamp("2026-11-02T09:31:00Z"))
        received = await asyncio.to_thread(smtp.wait_for, 1, 60.0)
        to_ana = [mail for mail in received if mail.rcpt_tos == ["ana@example.com"]]
        assert to_ana, [mail.rcpt_tos for mail in received]
        assert to_ana[0].message["Subject"] == "Flight changed: TP 1234"

    asyncio.run(scenario())
