"""The providers' callbacks and the in-app routes on aiohttp's test server, with the
real route table and no broker (a stub producer keeps the feedback)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from api.server import HttpApi
from delivery.channels import Message
from delivery.inapp import InAppAdapter, InAppStore
from delivery.provider import Reference, References
from delivery.render import RenderedContent
from delivery.sms import SmsAdapter
from delivery.tracking_config import tracking_key
from delivery.whatsapp import WhatsAppAdapter
from schemas.commands import SendCommand
from schemas.devices import DeviceOp, DeviceUpdate, PhoneNumber, device_id
from schemas.feedback import Feedback, FeedbackStatus
from schemas.presets import InAppButton, InAppContent, SmsContent, WhatsAppContent
from schemas.values import parse_timestamp
from streams.engine import Engine
from streams.ingest import IngestProducer
from streams.settings import Settings
from tests.fakes.messaging import (
    SID,
    TOKEN,
    WA_PHONE_ID,
    WA_SECRET,
    WA_TOKEN,
    FakeTwilio,
    FakeWhatsApp,
    running,
    signed,
    twilio_signature,
    whatsapp_status,
)
from tests.unit.test_tracking_routes import StubProducer

NOW = parse_timestamp("2026-12-01T10:00:00Z")
PUBLIC = "https://reach.example.com"
KEYS = {"admin": "admin-key-0123456789", "read": "read-key-01234567890"}
INAPP_KEY = "inapp-key-0123456789"
VERIFY = "whatsapp-verify-token-for-tests"
ALICE = "+14155550101"


@dataclass
class Api:
    client: TestClient[Any, Any]
    engine: Engine
    producer: StubProducer
    settings: Settings
    http: HttpApi

    def feedback(self) -> list[Feedback]:
        topic = self.engine.topics.feedback
        return [Feedback.model_validate_json(v) for t, _, v in self.producer.sent if t == topic]

    def device_updates(self) -> list[tuple[str, DeviceUpdate]]:
        topic = self.engine.topics.devices
        return [
            (user, DeviceUpdate.model_validate_json(value))
            for t, user, value in self.producer.sent
            if t == topic
        ]


def configured(tmp_path: Path, **more: Any) -> Settings:
    keys = ",".join([f"{KEYS['admin']}:admin", f"{KEYS['read']}:read", f"{INAPP_KEY}:inapp"])
    values: dict[str, Any] = {
        "api_keys": keys,
        "clock": "simulated",
        "tracking_secret": "messaging-routes-secret",
        "tracking_base_url": PUBLIC,
        "data_dir": tmp_path,
        "twilio_account_sid": SID,
        "twilio_auth_token": TOKEN,
        "twilio_from": "+15005550006",
        "whatsapp_phone_number_id": WA_PHONE_ID,
        "whatsapp_access_token": WA_TOKEN,
        "whatsapp_app_secret": WA_SECRET,
        "whatsapp_verify_token": VERIFY,
        "inapp": True,
    }
    return Settings(**(values | more))


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    settings = configured(tmp_path)
    engine = Engine.from_settings(settings, "127.0.0.1:1")
    engine.clock.advance(NOW)
    producer = StubProducer()
    http = HttpApi(engine)
    http._producer = cast(IngestProducer, producer)
    async with TestClient(TestServer(http.build())) as client:
        yield Api(client, engine, producer, settings, http)
    if http._messaging is not None:
        await http._messaging.close()


def command(
    channel: str, user: str = "u1", step: str = "s", visit: int = 1, **more: Any
) -> SendCommand:
    return SendCommand(
        command_id=f"j:1:r1:{step}:{visit}:0123456789abcdef",
        user_id=user,
        channel=channel,
        preset="p",
        journey_id="j",
        journey_version=1,
        run="r1",
        step=step,
        visit=visit,
        at=NOW,
        **more,
    )


def rendered(channel: str, content: Any) -> RenderedContent:
    return RenderedContent(
        preset_id="p", version=1, channel=channel, language=None, content=content
    )


# --- SMS status callbacks ---------------------------------------------------------------


async def sent_sms(api: Api, fake: FakeTwilio) -> dict[str, str]:
    settings = api.settings.model_copy(update={"twilio_base_url": fake.url})
    sms = SmsAdapter(settings)
    devices = [PhoneNumber(number=ALICE)]
    message = Message(command("sms", devices=devices), rendered("sms", SmsContent(text="Hi")))
    assert (await sms.deliver(message)).outcome.status == "delivered"
    await sms.stop()
    return fake.delivered[-1]


async def callback(api: Api, sent: dict[str, str], params: dict[str, str], key: str = TOKEN) -> int:
    """Post a status callback as the provider does: signed over the public URL."""
    url = sent["StatusCallback"]
    signature = twilio_signature(key, url, params)
    local = URL(url).path_qs
    answer = await api.client.post(local, data=params, headers={"X-Twilio-Signature": signature})
    return answer.status


@pytest.mark.parametrize(
    ("status", "error", "expected"),
    [
        ("undelivered", "30003", [(FeedbackStatus.BOUNCED, "undelivered: error 30003")]),
        ("failed", "30008", [(FeedbackStatus.FAILED, "failed: error 30008")]),
        (
            "failed",
            "21610",
            [(FeedbackStatus.FAILED, "failed: error 21610"), (FeedbackStatus.UNSUBSCRIBED, "STOP")],
        ),
        ("delivered", "", []),  # the send reported it already
        ("sent", "", []),
    ],
)
async def test_sms_status_callbacks_become_feedback(
    api: Api, status: str, error: str, expected: list[tuple[FeedbackStatus, str]]
) -> None:
    fake = FakeTwilio()
    async with running(fake):
        sent = await sent_sms(api, fake)
    params = {"MessageSid": "SM1", "MessageStatus": status, "To": ALICE, "AccountSid": SID}
    if error:
        params["ErrorCode"] = error
    assert await callback(api, sent, params) == 200
    found = api.feedback()
    assert [(item.status, item.reason) for item in found] == expected
    for item in found:
        assert (item.command_id, item.user_id, item.channel, item.timestamp) == (
            "j:1:r1:s:1:0123456789abcdef",
            "u1",
            "sms",
            NOW,
        )


@pytest.mark.parametrize("error", ["21211", "21614", "30005", "30006"])
async def test_a_dead_number_from_a_status_callback_is_unregistered(api: Api, error: str) -> None:
    fake = FakeTwilio()
    async with running(fake):
        sent = await sent_sms(api, fake)
    params = {"MessageSid": "SM1", "MessageStatus": "undelivered", "To": ALICE, "ErrorCode": error}
    assert await callback(api, sent, params) == 200
    [(user, update)] = api.device_updates()
    assert user == "u1"
    assert (update.user_id, update.op, update.device_id) == (
        "u1",
        DeviceOp.UNREGISTER,
        device_id(PhoneNumber(number=ALICE)),
    )
    assert update.reason == f"provider: SMS error {error}"
    assert update.timestamp == NOW
    assert [item.status for item in api.feedback()] == [FeedbackStatus.BOUNCED]


async def test_a_passing_sms_error_unregisters_nothing(api: Api) -> None:
    fake = FakeTwilio()
    async with running(fake):
        sent = await sent_sms(api, fake)
    params = {
        "MessageSid": "SM1",
        "MessageStatus": "undelivered",
        "To": ALICE,
        "ErrorCode": "30003",
    }
    assert await callback(api, sent, params) == 200
    assert api.device_updates() == []


async def test_a_forged_sms_callback_is_refused(api: Api) -> None:
    fake = FakeTwilio()
    async with running(fake):
        sent = await sent_sms(api, fake)
    params = {"MessageSid": "SM1", "MessageStatus": "failed", "To": ALICE}
    assert await callback(api, sent, params, key="not-the-auth-token") == 403
    # Signed by the provider, but a reference this system did not make.
    foreign = References(b"another key").make(Reference("j:1:r1:s:1:x", "u2", "sms", "d"))
    forged = {**sent, "StatusCallback": f"{PUBLIC}/t/sms/status?ref={foreign}"}
    assert await callback(api, forged, params) == 403
    # A parameter changed after signing.
    url = sent["StatusCallback"]
    signature = twilio_signature(TOKEN, url, params)
    answer = await api.client.post(
        URL(url).path_qs,
        data={**params, "MessageStatus": "undelivered"},
        headers={"X-Twilio-Signature": signature},
    )
    assert answer.status == 403
    assert api.producer.sent == []


async def test_a_callback_the_broker_did_not_take_is_asked_again(api: Api) -> None:
    fake = FakeTwilio()
    async with running(fake):
        sent = await sent_sms(api, fake)
    api.producer.broken = True
    params = {"MessageSid": "SM1", "MessageStatus": "undelivered", "To": ALICE}
    assert await callback(api, sent, params) == 503


async def test_the_fakes_own_callback_reaches_the_route(api: Api) -> None:
    """The fake posts the callback itself, to the URL the adapter gave it."""
    fake = FakeTwilio()
    server_url = str(api.client.make_url(""))
    settings = api.settings.model_copy(update={"tracking_base_url": server_url.rstrip("/")})
    api.engine.settings = settings  # the API checks signatures over its public URL
    async with running(fake):
        sms = SmsAdapter(settings.model_copy(update={"twilio_base_url": fake.url}))
        message = Message(
            command("sms", devices=[PhoneNumber(number=ALICE)]),
            rendered("sms", SmsContent(text="Hi")),
        )
        await sms.deliver(message)
        await sms.stop()
        assert await fake.report(fake.delivered[0], "undelivered", "30005") == 200
    assert [item.status for item in api.feedback()] == [FeedbackStatus.BOUNCED]


# --- WhatsApp webhooks ------------------------------------------------------------------


async def test_the_webhook_verification_challenge(api: Api) -> None:
    query = {"hub.mode": "subscribe", "hub.verify_token": VERIFY, "hub.challenge": "1158201444"}
    answer = await api.client.get("/t/whatsapp", params=query)
    assert (answer.status, await answer.text()) == (200, "1158201444")
    wrong = {**query, "hub.verify_token": "guess"}
    assert (await api.client.get("/t/whatsapp", params=wrong)).status == 403


async def sent_whatsapp(api: Api, fake: FakeWhatsApp) -> dict[str, Any]:
    settings = api.settings.model_copy(update={"whatsapp_base_url": fake.url})
    whatsapp = WhatsAppAdapter(settings)
    content = WhatsAppContent(template="hello", language="en")
    devices = [PhoneNumber(number=ALICE, whatsapp=True)]
    message = Message(command("whatsapp", devices=devices), rendered("whatsapp", content))
    assert (await whatsapp.deliver(message)).outcome.status == "delivered"
    await whatsapp.stop()
    return fake.delivered[-1]


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        ("read", None, [(FeedbackStatus.OPENED, None)]),
        ("failed", 131026, [(FeedbackStatus.FAILED, "131026 Message undeliverable")]),
        ("delivered", None, []),
        ("sent", None, []),
    ],
)
async def test_whatsapp_statuses_become_feedback(
    api: Api, status: str, code: int | None, expected: list[tuple[FeedbackStatus, str | None]]
) -> None:
    fake = FakeWhatsApp()
    async with running(fake):
        sent = await sent_whatsapp(api, fake)
    body = whatsapp_status(sent, status, code)
    answer = await api.client.post("/t/whatsapp", data=body, headers=signed(body))
    assert answer.status == 200
    assert [(item.status, item.reason) for item in api.feedback()] == expected
    assert all(item.channel == "whatsapp" for item in api.feedback())


async def test_a_forged_whatsapp_webhook_is_refused(api: Api) -> None:
    fake = FakeWhatsApp()
    async with running(fake):
        sent = await sent_whatsapp(api, fake)
    body = whatsapp_status(sent, "read")
    for headers in (signed(body, "not-the-app-secret"), {"Content-Type": "application/json"}):
        answer = await api.client.post("/t/whatsapp", data=body, headers=headers)
        assert answer.status == 403
    # Signed, but about a message this system did not send: nothing to report.
    other = whatsapp_status({"to": ALICE, "biz_opaque_callback_data": "x.y"}, "read")
    assert (await api.client.post("/t/whatsapp", data=other, headers=signed(other))).status == 200
    assert api.producer.sent == []


# --- in-app -------------------------------------------------------------------------------


LAYOUT = InAppContent(
    title="Welcome, Ana",
    body="Your first order ships free",
    image="https://cdn.example.com/free.png",
    buttons=(
        InAppButton(label="Shop", link="myapp://shop"),
        InAppButton(label="Later", action="dismiss"),
    ),
)


async def keep(api: Api, *messages: tuple[SendCommand, InAppContent]) -> None:
    adapter = InAppAdapter(api.settings)
    for item, content in messages:
        result = await adapter.deliver(Message(item, rendered("in_app", content)))
        assert result.outcome.status == "delivered"
    await adapter.stop()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_an_app_reads_its_users_messages(api: Api) -> None:
    await keep(api, (command("in_app"), LAYOUT))
    answer = await api.client.get("/v1/users/u1/inapp", headers=bearer(INAPP_KEY))
    assert answer.status == 200
    assert await answer.json() == {
        "user_id": "u1",
        "messages": [
            {
                "command_id": "j:1:r1:s:1:0123456789abcdef",
                "created_at": "2026-12-01T10:00:00+00:00",
                "expires_at": "2026-12-31T10:00:00+00:00",
                "title": "Welcome, Ana",
                "body": "Your first order ships free",
                "image": "https://cdn.example.com/free.png",
                "buttons": [
                    {"label": "Shop", "action": "open", "link": "myapp://shop"},
                    {"label": "Later", "action": "dismiss"},
                ],
                "preset": "p",
                "language": None,
            }
        ],
    }
    other = await api.client.get("/v1/users/u2/inapp", headers=bearer(INAPP_KEY))
    assert (await other.json())["messages"] == []
    refused = await api.client.get("/v1/users/u1/inapp", headers=bearer(KEYS["read"]))
    assert refused.status == 401


async def test_a_users_token_reads_that_users_messages_only(api: Api) -> None:
    await keep(api, (command("in_app"), LAYOUT), (command("in_app", user="u2"), LAYOUT))
    minted = await api.client.post(
        "/v1/users/u1/inapp/token", json={"hours": 1}, headers=bearer(INAPP_KEY)
    )
    assert minted.status == 200
    token = (await minted.json())["token"]
    mine = await api.client.get("/v1/users/u1/inapp", headers=bearer(token))
    assert mine.status == 200
    assert len((await mine.json())["messages"]) == 1
    assert (await api.client.get("/v1/users/u2/inapp", headers=bearer(token))).status == 401
    # A user's token makes no tokens.
    again = await api.client.post("/v1/users/u1/inapp/token", json={}, headers=bearer(token))
    assert again.status == 401
    # Expired an hour on.
    api.engine.clock.advance(parse_timestamp("2026-12-01T11:00:01Z"))
    assert (await api.client.get("/v1/users/u1/inapp", headers=bearer(token))).status == 401
    # A token from another key.
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert (await api.client.get("/v1/users/u1/inapp", headers=bearer(forged))).status == 401


async def test_impression_click_and_dismiss_are_feedback_once_each(api: Api) -> None:
    await keep(api, (command("in_app"), LAYOUT))
    base = "/v1/users/u1/inapp/j:1:r1:s:1:0123456789abcdef"
    for action in ("impression", "impression", "click", "dismiss"):
        answer = await api.client.post(f"{base}/{action}", headers=bearer(INAPP_KEY))
        assert answer.status == 200
    assert [(item.status, item.channel) for item in api.feedback()] == [
        (FeedbackStatus.OPENED, "in_app"),
        (FeedbackStatus.CLICKED, "in_app"),
        (FeedbackStatus.DISMISSED, "in_app"),
    ]
    listed = await api.client.get("/v1/users/u1/inapp", headers=bearer(INAPP_KEY))
    assert (await listed.json())["messages"] == []
    unknown = await api.client.post(
        "/v1/users/u2/inapp/j:1:r1:s:1:0123456789abcdef/click", headers=bearer(INAPP_KEY)
    )
    assert unknown.status == 404
    wrong = await api.client.post(f"{base}/like", headers=bearer(INAPP_KEY))
    assert wrong.status == 404


async def test_messages_expire_and_a_user_keeps_the_newest(api: Api, tmp_path: Path) -> None:
    short = LAYOUT.model_copy(update={"expires_hours": 2.0})
    await keep(api, (command("in_app", step="a"), short), (command("in_app", step="b"), LAYOUT))
    api.engine.clock.advance(parse_timestamp("2026-12-01T12:00:00Z"))
    listed = await api.client.get("/v1/users/u1/inapp", headers=bearer(INAPP_KEY))
    assert [item["command_id"][:8] for item in (await listed.json())["messages"]] == ["j:1:r1:b"]
    # Storing the same command again keeps one message.
    await keep(api, (command("in_app", step="b"), LAYOUT))
    limited = api.settings.model_copy(update={"inapp_max_per_user": 3})
    adapter = InAppAdapter(limited)
    for visit in range(1, 6):
        item = command("in_app", step="c", visit=visit).model_copy(
            update={"at": parse_timestamp(f"2026-12-01T12:0{visit}:00Z")}
        )
        await adapter.deliver(Message(item, rendered("in_app", LAYOUT)))
    await adapter.stop()
    listed = await api.client.get("/v1/users/u1/inapp", headers=bearer(INAPP_KEY))
    visits = [item["command_id"].split(":")[4] for item in (await listed.json())["messages"]]
    assert visits == ["5", "4", "3"]


async def test_secrets_are_never_in_status_nor_in_the_logs(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake, whatsapp = FakeTwilio(), FakeWhatsApp()
    async with running(fake), running(whatsapp):
        await sent_sms(api, fake)
        await sent_whatsapp(api, whatsapp)
    status = await api.client.get("/v1/status", headers=bearer(KEYS["read"]))
    assert status.status == 200
    text = await status.text()
    logged = "\n".join(record.getMessage() for record in caplog.records)
    for secret in (TOKEN, WA_TOKEN, WA_SECRET, VERIFY):
        assert secret not in text
        assert secret not in logged
        assert secret not in repr(api.settings)
    assert orjson.loads(text)["counters"] is not None


def test_keys_used_here_are_the_tracking_key(tmp_path: Path) -> None:
    assert tracking_key(configured(tmp_path)) == b"messaging-routes-secret"


async def test_a_button_a_users_value_turned_into_a_script_is_not_kept(api: Api) -> None:
    button = InAppButton(label="Open", link="javascript:alert(1)")
    adapter = InAppAdapter(api.settings)
    content = LAYOUT.model_copy(update={"buttons": (button,)})
    result = await adapter.deliver(Message(command("in_app"), rendered("in_app", content)))
    await adapter.stop()
    assert (result.outcome.status, result.outcome.reason) == (
        "failed",
        "the button 'Open' links to a script",
    )


def test_the_store_is_owner_only(tmp_path: Path) -> None:
    store = InAppStore(tmp_path / "inapp.sqlite3", 10)
    store.close()
    assert (tmp_path / "inapp.sqlite3").stat().st_mode & 0o777 == 0o600


async def test_forgetting_a_user_deletes_their_in_app_messages(api: Api) -> None:
    await keep(api, (command("in_app"), LAYOUT), (command("in_app", user="u2"), LAYOUT))
    assert api.http._messaging is not None
    await api.http._messaging.forget("u1")  # what DELETE /v1/users/u1 does besides
    listed = await api.client.get("/v1/users/u1/inapp", headers=bearer(INAPP_KEY))
    assert (await listed.json())["messages"] == []
    other = await api.client.get("/v1/users/u2/inapp", headers=bearer(INAPP_KEY))
    assert len((await other.json())["messages"]) == 1
