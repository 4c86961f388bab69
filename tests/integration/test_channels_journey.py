"""Every provider channel end to end through the device registry: devices registered
with ``POST /v1/devices`` (an iOS token, an Android token, a web push subscription, a
phone number), a journey sending push, web push and SMS, and each provider's local
fake receiving the message for each registered device: APNs over HTTP/2 with the JWT
checked, FCM with the OAuth token checked, the web push service decrypting the payload,
the Twilio-shaped server. An FCM ``UNREGISTERED`` answer unregisters that device: the
user leaves the ``R("push")`` segment and the next command no longer carries it; a
status callback saying a number is dead unregisters the number."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from benchmarks.push_fakes import TOPIC, Fakes, fcm_error, push_fakes
from schemas.devices import PhoneNumber, PushDevice, device_id
from streams.settings import Settings
from streams.topics import Topics
from tests.fakes.messaging import SID, TOKEN, FakeTwilio, running_in_thread
from tests.integration.seed_campaign import rows
from tests.integration.topic_reading import every_item
from tests.unit.journey_sim import preset
from worker.supervisor import SystemProcess

pytestmark = pytest.mark.integration

TOPICS = Topics.from_settings(Settings())
AT = "2026-12-01T10:00:00Z"
IPHONE = {"kind": "push", "platform": "ios", "token": "a1" * 32, "app_id": TOPIC}
PIXEL = {"kind": "push", "platform": "android", "token": "fcm-token-of-ana", "app_id": TOPIC}
GONE = {"kind": "push", "platform": "android", "token": "fcm-token-of-bo", "app_id": TOPIC}
PHONE = {"kind": "phone", "number": "+14155550101"}
JOURNEY = {
    "id": "every-channel",
    "name": "Every channel",
    "entries": [{"kind": "api"}],
    "start": "push",
    "nodes": [
        {"id": "push", "type": "message", "channel": "push", "preset": "hi-push",
         "next": {"next": "web"}},
        {"id": "web", "type": "message", "channel": "web_push", "preset": "hi-web",
         "next": {"next": "sms"}},
        {"id": "sms", "type": "message", "channel": "sms", "preset": "hi-sms",
         "next": {"next": "done"}},
        {"id": "done", "type": "exit"},
    ],
}  # fmt: skip
PUSH_ONLY = {
    "id": "push-again",
    "name": "Push again",
    "entries": [{"kind": "api"}],
    "start": "push",
    "nodes": [
        {"id": "push", "type": "message", "channel": "push", "preset": "hi-push",
         "next": {"next": "done"}},
        {"id": "done", "type": "exit"},
    ],
}  # fmt: skip


@pytest.fixture(scope="module")
def fakes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fakes]:
    with push_fakes(tmp_path_factory.mktemp("channel-fakes")) as started:
        yield started


@pytest.fixture(scope="module")
def twilio() -> Iterator[FakeTwilio]:
    fake = FakeTwilio()
    with running_in_thread(fake):
        yield fake


@pytest.fixture(scope="module")
def system(
    tmp_path_factory: pytest.TempPathFactory, fakes: Fakes, twilio: FakeTwilio
) -> Iterator[SystemProcess]:
    env = {
        f"REACH_{name.upper()}": str(value)
        for name, value in fakes.settings.items()
        if name != "data_dir"
    }
    env.update(
        {
            "REACH_HTTP_PORT": "0",
            "REACH_PARTITIONS": "2",
            "REACH_PROJECTION_FLUSH_SECONDS": "0.2",
            "REACH_TWILIO_ACCOUNT_SID": SID,
            "REACH_TWILIO_AUTH_TOKEN": TOKEN,
            "REACH_TWILIO_FROM": "+15005550006",
            "REACH_TWILIO_BASE_URL": twilio.url,
        }
    )
    with SystemProcess(tmp_path_factory.mktemp("channels"), env) as running:
        yield running


def register(user: str, device: dict[str, Any]) -> dict[str, Any]:
    return {"user_id": user, "device": device, "timestamp": AT}


async def arrived(found: Callable[[], list[Any]], what: str, timeout: float = 60) -> list[Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = found()
        if got:
            return got
        await asyncio.sleep(0.1)
    raise AssertionError(f"nothing arrived: {what}")


async def commands(system: SystemProcess, journey: str, count: int) -> list[dict[str, Any]]:
    assert system.info is not None
    deadline = time.monotonic() + 30
    while True:
        found = [
            item
            for item in await every_item(system.info.broker, TOPICS.send_commands)
            if item["journey_id"] == journey
        ]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.2)


def test_registered_devices_get_each_channel_and_a_gone_token_is_unregistered(
    system: SystemProcess, fakes: Fakes, twilio: FakeTwilio
) -> None:
    api = system.http
    fakes.fcm.script(GONE["token"], fcm_error(404, "NOT_FOUND", "UNREGISTERED"))

    async def scenario() -> None:
        status, body = await api.call("GET", "/v1/status")
        assert status == 200
        assert body["channels"]["push"] == "delivery.push.PushAdapter"
        assert body["channels"]["web_push"] == "delivery.push.WebPushAdapter"
        assert body["channels"]["sms"] != "simulated"
        for preset_id, channel in (("hi-push", "push"), ("hi-web", "web_push"), ("hi-sms", "sms")):
            definition = preset(preset_id, channel).model_dump(mode="json")
            assert (await api.call("POST", "/v1/presets", definition))[0] == 200
        pushable = {
            "id": "pushable",
            "name": "Pushable",
            "condition": {"kind": "reachable", "channel": "push"},
        }
        assert (await api.call("POST", "/v1/segments", pushable))[0] == 200
        for journey in (JOURNEY, PUSH_ONLY):
            assert (await api.call("POST", "/v1/journeys", journey))[0] == 200
            assert (await api.call("POST", f"/v1/journeys/{journey['id']}/launch"))[0] == 200

        browser = fakes.web_push.subscribe()
        updates = [
            register("ana", IPHONE),
            register("ana", PIXEL),
            register("ana", browser.model_dump(mode="json")),
            register("ana", PHONE),
            register("bo", GONE),
        ]
        status, answer = await api.call("POST", "/v1/devices", updates)
        assert (status, answer) == (200, {"accepted": 5, "errors": []})
        members = await rows(
            api, "SELECT user_id FROM segment_memberships FINAL WHERE change = 'entered' "
            "ORDER BY user_id", 2
        )  # fmt: skip
        assert members == [["ana"], ["bo"]]

        entries = {"users": [{"user_id": "ana"}, {"user_id": "bo"}]}
        assert (await api.call("POST", "/v1/journeys/every-channel/entries", entries))[0] == 200

        # APNs (HTTP/2, its JWT checked by the fake) got Ana's iPhone.
        [to_iphone] = await arrived(
            lambda: [a for a in fakes.apns.accepted if a["token"] == IPHONE["token"]], "APNs"
        )
        assert to_iphone["headers"]["apns-topic"] == TOPIC
        assert to_iphone["payload"]["aps"]["alert"] == {"title": "Hello", "body": "Hi there"}
        # FCM (its OAuth token checked) got Ana's Android phone.
        [to_pixel] = await arrived(
            lambda: [m for m in fakes.fcm.accepted if m["token"] == PIXEL["token"]], "FCM"
        )
        assert to_pixel["notification"] == {"title": "Hello", "body": "Hi there"}
        # The push service decrypted the web push with the browser's keys.
        name = browser.endpoint.rsplit("/", 1)[1]
        [to_browser] = await arrived(
            lambda: [r for r in fakes.web_push.received if r["subscription"] == name],
            f"web push (refused: {fakes.web_push.refused})",
        )
        assert to_browser["payload"]["title"] == "Hello"
        assert to_browser["payload"]["body"] == "Hi there"
        # The SMS provider got the text for Ana's number.
        [text] = await arrived(
            lambda: [m for m in twilio.delivered if m["To"] == PHONE["number"]], "SMS"
        )
        assert text["Body"] == "Hi there"
        assert twilio.refused == []

        # FCM said Bo's token is gone: it is unregistered, Bo is no longer pushable.
        assert [m for m in fakes.fcm.accepted if m["token"] == GONE["token"]] == []
        exited = await rows(
            api, "SELECT user_id FROM segment_memberships FINAL WHERE change = 'exited'", 1
        )
        assert exited == [["bo"]]
        dropped = await rows(
            api, "SELECT user_id, device_id, reason FROM devices FINAL WHERE live = 0", 1
        )
        gone = device_id(PushDevice.model_validate(GONE))
        assert dropped == [["bo", gone, "provider: Unregistered"]]
        kept = await rows(
            api, "SELECT kind FROM devices FINAL WHERE user_id = 'ana' AND live = 1 "
            "ORDER BY kind", 4
        )  # fmt: skip
        assert kept == [["phone"], ["push"], ["push"], ["web_push"]]

        # The next command's devices: Ana's two push devices, none for Bo.
        assert (await api.call("POST", "/v1/journeys/push-again/entries", entries))[0] == 200
        [again] = await commands(system, "push-again", 1)
        assert again["user_id"] == "ana"
        assert {device_id(PushDevice.model_validate(d)) for d in again["devices"]} == {
            device_id(PushDevice.model_validate(IPHONE)),
            device_id(PushDevice.model_validate(PIXEL)),
        }
        unreachable = await rows(
            api, "SELECT user_id FROM journey_activity FINAL WHERE journey_id = 'push-again' "
            "AND activity = 'unreachable'", 1
        )  # fmt: skip
        assert unreachable == [["bo"]]

        # The SMS provider reports Ana's number dead: the number is unregistered.
        assert await twilio.report(text, "undelivered", "21211") == 200
        phone = await rows(
            api, "SELECT device_id, reason FROM devices FINAL WHERE user_id = 'ana' AND live = 0", 1
        )
        number = device_id(PhoneNumber.model_validate(PHONE))
        assert phone == [[number, "provider: SMS error 21211"]]

    asyncio.run(scenario())
