"""Push end to end: the seed's "flight changed" journey (push, then email to who did
not open it within 30 minutes) on a system whose push goes to a local FCM fake (OAuth
token and message schema checked) and whose email goes to a local SMTP server. The
users' push tokens are ``Push Token`` tags (FCM registration tokens); one of them is
gone, as FCM says with ``UNREGISTERED``."""

from __future__ import annotations

import asyncio
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
SEGMENT = {
    "id": "has-push-token",
    "name": "Has a push token",
    "expression": 'T("Push Token", string, exists)',
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
        assert (await api.call("POST", "/v1/segments", [SEGMENT]))[0] == 200
        tags = [
            {
                "user_id": user,
                "timestamp": START,
                "tags": {"Push Token": token, "Email": f"{user}@example.com"},
            }
            for user, token in TOKENS.items()
        ]
        assert (await api.call("POST", "/v1/tags", tags))[0] == 200
        await rows(
            api, "SELECT user_id FROM segment_memberships WHERE segment_id = 'has-push-token'", 2
        )
        [journey] = [j for j in seed_journeys() if j["id"] == JOURNEY]
        assert (await api.call("POST", "/v1/journeys", journey))[0] == 200
        assert (await api.call("POST", f"/v1/journeys/{JOURNEY}/launch"))[0] == 200
        changed = [
            {
                "user_id": user,
                "name": "FlightChanged",
                "timestamp": "2026-11-02T09:00:01Z",
                "attributes": {"flight": "TP 1234", "departure": "18:40", "booking": "B7"},
            }
            for user in TOKENS
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

        # Half an hour on, Ana has not opened the push: the email follows.
        await send_tick(settings, TOPICS.clock, parse_timestamp("2026-11-02T09:31:00Z"))
        received = await asyncio.to_thread(smtp.wait_for, 1, 60.0)
        to_ana = [mail for mail in received if mail.rcpt_tos == ["ana@example.com"]]
        assert to_ana, [mail.rcpt_tos for mail in received]
        assert to_ana[0].message["Subject"] == "Flight changed: TP 1234"

    asyncio.run(scenario())
