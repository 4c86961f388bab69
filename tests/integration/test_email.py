"""Email end to end: a system whose email goes to a real SMTP server on loopback
(aiosmtpd), a journey that waits for an open, and the open made by fetching the
received email's pixel from the HTTP API, as a mail client would. The opener takes
the ``opened`` output; the one who does not open gets the SMS a day later, then
unsubscribes with the message's one-click ``List-Unsubscribe``."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import aiohttp
import pytest

from client.system import send_tick
from schemas.values import parse_timestamp
from streams.settings import Settings
from streams.topics import Topics
from tests.integration.seed_campaign import rows
from tests.smtp_server import SmtpServer, running_smtp_server
from worker.supervisor import SystemProcess

pytestmark = pytest.mark.integration

TOPICS = Topics.from_settings(Settings())
START = "2026-11-02T09:00:00Z"
OPENER, IGNORER = "ana", "bo"
SEGMENT = {"id": "has-email", "name": "Has an email", "expression": 'T("Email", string, exists)'}
PRESETS = [
    {
        "id": "renewal-mail",
        "name": "Renewal",
        "channel": "email",
        "content": {
            "sender": "Reach Plus <plus@reach.example>",
            "subject": "Your {{property.plan}} plan ends soon",
            "text": "Hi {{tag.First Name|there}}, renew: https://reach.example/renew",
            "html": (
                "<html><body><p>Hi {{tag.First Name|there}},</p>"
                '<p><a href="https://reach.example/renew?plan={{property.plan}}">Renew</a></p>'
                "</body></html>"
            ),
        },
    },
    {
        "id": "renewal-text",
        "name": "Renewal (SMS)",
        "channel": "sms",
        "content": {"text": "Your plan ends soon: https://reach.example/renew"},
    },
]
JOURNEY = {
    "id": "renewal-by-mail",
    "name": "Renewal by email, then SMS",
    "entries": [{"kind": "api"}],
    "start": "email",
    "nodes": [
        {
            "id": "email",
            "type": "message",
            "channel": "email",
            "preset": "renewal-mail",
            "split_after": {"amount": 1, "unit": "days"},
            "next": {"opened": "done", "not_opened": "sms"},
        },
        {
            "id": "sms",
            "type": "message",
            "channel": "sms",
            "preset": "renewal-text",
            "next": {"next": "done"},
        },
        {"id": "done", "type": "exit"},
    ],
}


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpServer]:
    yield from running_smtp_server()


@pytest.fixture(scope="module")
def mailing(tmp_path_factory: pytest.TempPathFactory, smtp: SmtpServer) -> Iterator[SystemProcess]:
    folder = tmp_path_factory.mktemp("email")
    env = {
        "REACH_HTTP_PORT": "0",
        "REACH_PARTITIONS": "2",
        "REACH_CLOCK": "simulated",
        "REACH_PROJECTION_FLUSH_SECONDS": "0.2",
        # No tracking secret or base URL: the key kept in the data dir and the API's
        # own address, as a single process runs by default.
        "REACH_SMTP_HOST": smtp.host,
        "REACH_SMTP_PORT": str(smtp.port),
    }
    with SystemProcess(folder, env) as running:
        yield running


def activity_of(user: str) -> str:
    return (
        "SELECT step, toString(activity) FROM journey_activity FINAL "
        f"WHERE journey_id = 'renewal-by-mail' AND user_id = '{user}' ORDER BY at, step, activity"
    )


def test_an_opened_email_takes_the_opened_output(mailing: SystemProcess, smtp: SmtpServer) -> None:
    api = mailing.http
    settings = Settings(data_dir=mailing.data_dir)

    async def scenario() -> None:
        await send_tick(settings, TOPICS.clock, parse_timestamp(START))
        tags = [
            {
                "user_id": user,
                "timestamp": START,
                "tags": {
                    "Email": f"{user}@example.com",
                    "Phone": "+15550100",
                    "First Name": user.title(),
                },
            }
            for user in (OPENER, IGNORER)
        ]
        assert (await api.call("POST", "/v1/segments", [SEGMENT]))[0] == 200
        assert (await api.call("POST", "/v1/tags", tags))[0] == 200
        # The segment state has the users' tags (they are members) before they enter:
        # the send command carries the address from there.
        await rows(api, "SELECT user_id FROM segment_memberships", 2)
        assert (await api.call("POST", "/v1/presets", PRESETS))[0] == 200
        assert (await api.call("POST", "/v1/journeys", JOURNEY))[0] == 200
        assert (await api.call("POST", "/v1/journeys/renewal-by-mail/launch"))[0] == 200
        users = [{"user_id": user, "properties": {"plan": "Gold"}} for user in (OPENER, IGNORER)]
        status, body = await api.call(
            "POST", "/v1/journeys/renewal-by-mail/entries", {"users": users}
        )
        assert status == 200, body

        received = await asyncio.to_thread(smtp.wait_for, 2, 60.0)
        by_user = {mail.rcpt_tos[0].split("@")[0]: mail.message for mail in received}
        assert sorted(by_user) == [OPENER, IGNORER]
        mail = by_user[OPENER]
        assert mail["Subject"] == "Your Gold plan ends soon"
        html = mail.get_body(("html",))
        assert html is not None
        body = html.get_content()
        assert "Hi Ana," in body
        assert "https://reach.example/renew" not in body  # behind the click redirect
        pixel = re.search(r'<img src="([^"]+/t/o/[^"]+)"', body)
        assert pixel is not None
        assert pixel.group(1).startswith(api.url)

        click = re.search(r'<a href="([^"]+/t/c/[^"]+)"', body)
        assert click is not None
        # The recipient's mail client loads the pixel; then they click.
        async with aiohttp.ClientSession() as http:
            async with http.get(pixel.group(1)) as response:
                assert response.status == 200
                assert response.content_type == "image/gif"
            async with http.get(click.group(1), allow_redirects=False) as response:
                assert response.status == 302
                assert response.headers["Location"] == "https://reach.example/renew?plan=Gold"
        opened = await rows(api, activity_of(OPENER), 4)
        assert ("email", "opened") in {tuple(row) for row in opened}
        # A day later the other one has not opened: the SMS.
        await send_tick(settings, TOPICS.clock, parse_timestamp("2026-11-03T09:00:01Z"))
        ignored = await rows(api, activity_of(IGNORER), 5)
        activities = {tuple(row) for row in ignored}
        assert ("email", "not_opened") in activities
        assert ("sms", "sent") in activities
        _, edges = await api.query(
            "SELECT from_step, output, to_step, users FROM journey_edge_stats "
            "WHERE journey_id = 'renewal-by-mail' ORDER BY from_step, output"
        )
        assert [tuple(edge) for edge in edges] == [
            ("email", "not_opened", "sms", 1),
            ("email", "opened", "done", 1),
            ("sms", "next", "done", 1),
        ]
        # The one who ignored it unsubscribes, as a mailbox provider's button does.
        unsubscribe = by_user[IGNORER]["List-Unsubscribe"]
        assert by_user[IGNORER]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        async with aiohttp.ClientSession() as http:
            form = {"List-Unsubscribe": "One-Click"}
            async with http.post(unsubscribe.strip("<>"), data=form) as response:
                assert response.status == 200
        feedback = await rows(
            api,
            "SELECT user_id, toString(status) FROM feedback FINAL WHERE channel = 'email'",
            5,
        )
        assert sorted(tuple(row) for row in feedback) == [
            (OPENER, "clicked"),
            (OPENER, "delivered"),
            (OPENER, "opened"),
            (IGNORER, "delivered"),
            (IGNORER, "unsubscribed"),
        ]

    asyncio.run(scenario())
