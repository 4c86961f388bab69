"""The open pixel and click redirect on aiohttp's test server, with the real route
table and no broker: the feedback they produce is kept by a stub producer."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from api.server import HttpApi
from api.tracking import PIXEL
from delivery.tracking import Tracking
from delivery.tracking_config import tracking_key
from schemas.feedback import Feedback, FeedbackStatus
from schemas.values import parse_timestamp
from streams.engine import Engine
from streams.ingest import IngestProducer
from streams.settings import Settings
from tests.unit.test_email_tracking import COMMAND

SECRET = "route-tracking-secret"
TARGET = "https://shop.example.com/cart?c=1&utm=mail"
NOW = parse_timestamp("2026-11-01T09:30:00Z")


@dataclass
class StubProducer:
    sent: list[tuple[str, str, bytes]] = field(default_factory=list)
    broken: bool = False

    async def send_encoded(self, topic: str, items: Iterable[tuple[str, bytes]]) -> int:
        if self.broken:
            raise ConnectionError("broker down")
        self.sent.extend((topic, user, value) for user, value in items)
        return 1

    def feedback(self) -> list[Feedback]:
        return [Feedback.model_validate_json(value) for _, _, value in self.sent]


@dataclass
class Api:
    client: TestClient[Any, Any]
    engine: Engine
    producer: StubProducer
    tracking: Tracking


async def serve(settings: Settings) -> AsyncIterator[Api]:
    engine = Engine.from_settings(settings, "127.0.0.1:1")
    engine.clock.advance(NOW)
    producer = StubProducer()
    http = HttpApi(engine)
    http._producer = cast(IngestProducer, producer)
    tracking = Tracking(settings.tracking_secret.encode() or b"unused")
    async with TestClient(TestServer(http.build())) as client:
        yield Api(client, engine, producer, tracking)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    # With API keys, as beyond loopback: the tracking routes need none.
    settings = Settings(
        api_keys="admin-key-0123456789:admin",
        clock="simulated",
        tracking_secret=SECRET,
        data_dir=tmp_path,
    )
    async for served in serve(settings):
        yield served


def path(url: str) -> str:
    return url.removeprefix("http://reach.test")


async def test_the_pixel_answers_a_gif_and_produces_one_opened_feedback(api: Api) -> None:
    url = path(api.tracking.pixel_url("http://reach.test", COMMAND))
    response = await api.client.get(url)
    assert response.status == 200
    assert response.content_type == "image/gif"
    assert await response.read() == PIXEL
    assert "no-store" in response.headers["Cache-Control"]
    ((topic, key, _),) = api.producer.sent
    assert (topic, key) == (api.engine.topics.feedback, "u-1")
    (feedback,) = api.producer.feedback()
    assert feedback == Feedback(
        command_id=COMMAND.command_id,
        user_id="u-1",
        status=FeedbackStatus.OPENED,
        timestamp=NOW,
        channel="email",
    )
    # Opened again at the same instant: the same feedback id, deduplicated downstream;
    # later, another open.
    await api.client.get(url)
    api.engine.clock.advance(parse_timestamp("2026-11-01T10:00:00Z"))
    await api.client.get(url)
    ids = [item.feedback_id for item in api.producer.feedback()]
    assert ids[0] == ids[1] != ids[2]
    # A link checker's HEAD is no open.
    assert (await api.client.head(url)).status == 200
    assert len(api.producer.sent) == 3


async def test_a_click_redirects_and_produces_clicked(api: Api) -> None:
    url = path(api.tracking.click_url("http://reach.test", COMMAND, TARGET))
    response = await api.client.get(url, allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == TARGET
    (feedback,) = api.producer.feedback()
    assert (feedback.status, feedback.command_id, feedback.timestamp) == (
        FeedbackStatus.CLICKED,
        COMMAND.command_id,
        NOW,
    )


async def test_tokens_this_system_did_not_make_answer_404(api: Api) -> None:
    pixel = api.tracking.pixel_url("", COMMAND)
    click = api.tracking.click_url("", COMMAND, TARGET)
    foreign = Tracking(b"someone else's key")
    refused = [
        "/t/o/nonsense",
        "/t/c/a.b",
        pixel.replace("/t/o/", "/t/c/"),  # an open token is no click token
        click.replace("/t/c/", "/t/o/"),
        pixel[:-3] + ("AAA" if not pixel.endswith("AAA") else "BBB"),
        foreign.click_url("", COMMAND, "https://evil.test/"),
        api.tracking.click_url("", COMMAND, "javascript:alert(1)"),  # signed, still no
    ]
    for url in refused:
        response = await api.client.get(url, allow_redirects=False)
        assert response.status == 404, url
    assert api.producer.sent == []


async def test_the_reader_gets_their_page_when_the_feedback_cannot_be_produced(
    api: Api,
) -> None:
    api.producer.broken = True
    pixel = await api.client.get(path(api.tracking.pixel_url("", COMMAND)))
    assert (pixel.status, await pixel.read()) == (200, PIXEL)
    click = await api.client.get(
        path(api.tracking.click_url("", COMMAND, TARGET)), allow_redirects=False
    )
    assert (click.status, click.headers["Location"]) == (302, TARGET)
    assert api.engine.counters["tracking_feedback_lost"] == 2


async def test_without_a_secret_the_key_kept_in_the_data_dir_verifies(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    tracking = Tracking(tracking_key(settings))  # as the email adapter makes it
    async for api in serve(settings):
        response = await api.client.get(tracking.pixel_url("", COMMAND))
        assert response.status == 200
        assert [orjson.loads(value)["status"] for _, _, value in api.producer.sent] == ["opened"]


async def test_a_one_click_post_unsubscribes_from_email(api: Api) -> None:
    url = path(api.tracking.unsubscribe_url("http://reach.test", COMMAND))
    response = await api.client.post(url, data={"List-Unsubscribe": "One-Click"})
    assert response.status == 200  # RFC 8058: an answer, no redirect
    assert "unsubscribed" in await response.text()
    ((topic, key, _),) = api.producer.sent
    assert (topic, key) == (api.engine.topics.feedback, "u-1")
    (feedback,) = api.producer.feedback()
    assert (feedback.status, feedback.command_id, feedback.channel, feedback.timestamp) == (
        FeedbackStatus.UNSUBSCRIBED,
        COMMAND.command_id,
        "email",
        NOW,
    )


async def test_a_get_only_shows_the_form_that_posts(api: Api) -> None:
    url = path(api.tracking.unsubscribe_url("http://reach.test", COMMAND))
    for _ in range(2):  # a link scanner following it, twice: still subscribed
        response = await api.client.get(url)
        assert response.status == 200
        assert response.content_type == "text/html"
        page = await response.text()
        assert '<form method="post">' in page  # no action: to this same URL
        assert '<button type="submit">Unsubscribe</button>' in page
    assert (await api.client.head(url)).status == 200
    assert api.producer.sent == []


async def test_a_bad_unsubscribe_token_answers_404_and_a_lost_one_503(api: Api) -> None:
    unsubscribe = api.tracking.unsubscribe_url("", COMMAND)
    refused = [
        "/t/u/nonsense",
        api.tracking.pixel_url("", COMMAND).replace("/t/o/", "/t/u/"),  # an open token
        Tracking(b"someone else's key").unsubscribe_url("", COMMAND),
        unsubscribe[:-3] + ("AAA" if not unsubscribe.endswith("AAA") else "BBB"),
    ]
    for url in refused:
        assert (await api.client.post(url)).status == 404, url
        assert (await api.client.get(url)).status == 404, url
    assert api.producer.sent == []
    # An opt-out the broker did not take is not confirmed: the sender tries again.
    api.producer.broken = True
    assert (await api.client.post(unsubscribe)).status == 503
    assert api.engine.counters["tracking_feedback_lost"] == 1


def _signed(tracking: Tracking, payload: bytes) -> str:
    """A token signed with the right key around a payload this system never makes (as
    someone holding the key, or a token of an older format, could present)."""
    encoded = base64.urlsafe_b64encode(payload).rstrip(b"=").decode()
    signature = base64.urlsafe_b64encode(tracking._sign(payload)).rstrip(b"=").decode()
    return f"{encoded}.{signature}"


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"{}",
        b'"open"',
        b"[]",
        b'["click"]',
        b'["click", "c", "u", "email"]',  # no target
        b'["click", "c", "u", "email", 42]',
        b'["open", 1, 2, 3]',
        b'["open", "c", "u", "email", "extra", "more"]',
        b"\xff\xfe",
    ],
)
async def test_signed_tokens_of_a_wrong_shape_answer_404(api: Api, payload: bytes) -> None:
    token = _signed(api.tracking, payload)
    for prefix in ("/t/o/", "/t/c/", "/t/u/"):
        response = await api.client.get(prefix + token, allow_redirects=False)
        assert response.status == 404, (prefix, payload)
    response = await api.client.post("/t/u/" + token)
    assert response.status == 404
    assert api.producer.sent == []


async def test_unsubscribe_bodies_of_any_shape_are_fine(api: Api) -> None:
    url = path(api.tracking.unsubscribe_url("http://reach.test", COMMAND))
    for body in (b"\xff\xfe\x00", b"List-Unsubscribe=%ZZ", b"{" * 1000):
        response = await api.client.post(
            url, data=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
        assert response.status == 200
