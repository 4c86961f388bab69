"""The WhatsApp adapter against a Cloud-API-shaped local server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from delivery.channels import Message
from delivery.provider import ProviderUnavailable, References, Retries
from delivery.render import RenderedContent
from delivery.simulator import SimulatedChannels
from delivery.tracking_config import tracking_key
from delivery.whatsapp import INBOUND_TAG, WhatsAppAdapter, last_inbound, whatsapp_channel
from schemas.commands import SendCommand
from schemas.devices import PhoneNumber, device_id
from schemas.presets import WhatsAppContent
from schemas.values import parse_timestamp
from streams.settings import Settings
from tests.fakes.messaging import (
    WA_PHONE_ID,
    WA_TOKEN,
    FakeWhatsApp,
    graph_error,
    running,
)

ALICE = "+14155550101"
BOB = "+5511987654321"
COMMAND_ID = "cart:3:r1:wa:1:0123456789abcdef"
AT = "2026-12-01T10:00:00Z"
TEMPLATE = WhatsAppContent(template="cart_reminder", language="pt_BR", parameters=("Ana", "2"))


def settings(base: str, tmp_path: Path, **more: Any) -> Settings:
    values: dict[str, Any] = {
        "whatsapp_phone_number_id": WA_PHONE_ID,
        "whatsapp_access_token": WA_TOKEN,
        "whatsapp_base_url": base,
        "tracking_secret": "wa-test-secret",
        "data_dir": tmp_path,
    }
    return Settings(**(values | more))


def message(
    *numbers: str,
    content: WhatsAppContent = TEMPLATE,
    opted_in: bool = True,
    address: str | None = None,
    tags: dict[str, Any] | None = None,
) -> Message:
    command = SendCommand(
        command_id=COMMAND_ID,
        user_id="u1",
        channel="whatsapp",
        preset="cart",
        journey_id="cart",
        journey_version=3,
        run="r1",
        step="wa",
        visit=1,
        at=AT,
        address=address,
        tags=tags or {},
        devices=[PhoneNumber(number=number, whatsapp=opted_in) for number in numbers],
    )
    rendered = RenderedContent(
        preset_id="cart", version=1, channel="whatsapp", language=None, content=content
    )
    return Message(command, rendered)


@pytest.fixture
async def fake() -> AsyncIterator[FakeWhatsApp]:
    provider = FakeWhatsApp()
    async with running(provider):
        yield provider


@pytest.fixture
async def adapter(fake: FakeWhatsApp, tmp_path: Path) -> AsyncIterator[WhatsAppAdapter]:
    whatsapp = WhatsAppAdapter(settings(fake.url, tmp_path), Retries(first_wait=0.01))
    await whatsapp.start()
    yield whatsapp
    await whatsapp.stop()


async def test_a_template_with_its_language_and_parameters(
    fake: FakeWhatsApp, adapter: WhatsAppAdapter, tmp_path: Path
) -> None:
    result = await adapter.deliver(message(ALICE))
    assert result.outcome.status == "delivered"
    assert fake.refused == []
    [sent] = fake.delivered
    assert sent["to"] == ALICE
    assert sent["type"] == "template"
    assert sent["template"] == {
        "name": "cart_reminder",
        "language": {"code": "pt_BR"},
        "components": [
            {
                "type": "body",
                "parameters": [{"type": "text", "text": "Ana"}, {"type": "text", "text": "2"}],
            }
        ],
    }
    reference = References(tracking_key(settings(fake.url, tmp_path))).read(
        sent["biz_opaque_callback_data"]
    )
    assert reference is not None
    assert (reference.command_id, reference.channel) == (COMMAND_ID, "whatsapp")
    assert reference.device_id == device_id(PhoneNumber(number=ALICE))


async def test_only_opted_in_numbers_get_it(fake: FakeWhatsApp, adapter: WhatsAppAdapter) -> None:
    result = await adapter.deliver(message(ALICE, opted_in=False))
    assert (result.outcome.status, result.outcome.reason) == (
        "failed",
        "the user has no phone number opted in to WhatsApp",
    )
    assert fake.calls == 0


async def test_without_devices_the_phone_tag_is_the_number(
    fake: FakeWhatsApp, adapter: WhatsAppAdapter
) -> None:
    assert (await adapter.deliver(message(address=BOB))).outcome.status == "delivered"
    assert [sent["to"] for sent in fake.delivered] == [BOB]


async def test_a_text_within_24_hours_of_the_users_message(
    fake: FakeWhatsApp, adapter: WhatsAppAdapter
) -> None:
    text = WhatsAppContent(text="Your order has shipped")
    inbound = {INBOUND_TAG: {"d": 1_796_083_200_000}}  # 10 hours before the send
    result = await adapter.deliver(message(ALICE, content=text, tags=inbound))
    assert result.outcome.status == "delivered"
    assert fake.delivered[0]["text"] == {"preview_url": False, "body": "Your order has shipped"}


@pytest.mark.parametrize(
    "tags", [{}, {INBOUND_TAG: "2026-11-29T09:00:00Z"}], ids=["no tag", "two days ago"]
)
async def test_a_text_outside_the_window_fails_with_a_clear_reason(
    fake: FakeWhatsApp, adapter: WhatsAppAdapter, tags: dict[str, Any]
) -> None:
    text = WhatsAppContent(text="Your order has shipped")
    result = await adapter.deliver(message(ALICE, content=text, tags=tags))
    assert result.outcome.status == "failed"
    assert result.outcome.reason is not None
    assert "within 24 hours of the user's last message" in result.outcome.reason
    assert "send a template" in result.outcome.reason
    assert fake.calls == 0


def test_the_inbound_tag_is_read_in_the_forms_tags_take() -> None:
    moment = parse_timestamp("2026-12-01T00:00:00Z")
    for value in ({"d": 1_796_083_200_000}, "2026-12-01T00:00:00Z", 1_796_083_200_000):
        assert last_inbound({INBOUND_TAG: value}) == moment
    assert last_inbound({INBOUND_TAG: "yesterday"}) is None


async def test_undeliverable_fails(fake: FakeWhatsApp, adapter: WhatsAppAdapter) -> None:
    fake.script[ALICE] = [graph_error(400, 131026, "Message undeliverable")]
    result = await adapter.deliver(message(ALICE))
    assert (result.outcome.status, result.outcome.reason) == (
        "failed",
        "131026 Message undeliverable",
    )


async def test_reengagement_required_fails_saying_what_to_do(
    fake: FakeWhatsApp, adapter: WhatsAppAdapter
) -> None:
    fake.script[ALICE] = [graph_error(400, 131047, "Re-engagement message")]
    result = await adapter.deliver(message(ALICE))
    assert result.outcome.status == "failed"
    assert result.outcome.reason == (
        "131047 more than 24 hours since the user's last message: re-engage with a template"
    )


async def test_429_5xx_are_tried_again(fake: FakeWhatsApp, adapter: WhatsAppAdapter) -> None:
    fake.script[ALICE] = [
        graph_error(429, 130429, "Rate limit hit", **{"Retry-After": "0"}),
        graph_error(500, 1, "An unknown error occurred"),
    ]
    assert (await adapter.deliver(message(ALICE))).outcome.status == "delivered"
    assert fake.calls == 3


async def test_throughput_errors_are_left_to_the_worker(
    fake: FakeWhatsApp, adapter: WhatsAppAdapter
) -> None:
    fake.script[ALICE] = [graph_error(400, 131056, "Pair rate limit hit")]
    with pytest.raises(ProviderUnavailable, match="131056"):
        await adapter.deliver(message(ALICE))


async def test_a_retry_does_not_send_again(fake: FakeWhatsApp, adapter: WhatsAppAdapter) -> None:
    fake.script[BOB] = [graph_error(503, 2, "down")] * 3
    with pytest.raises(ProviderUnavailable):
        await adapter.deliver(message(ALICE, BOB))
    assert [sent["to"] for sent in fake.delivered] == [ALICE]
    # The worker retries the command: Alice is not sent the template twice.
    assert (await adapter.deliver(message(ALICE, BOB))).outcome.status == "delivered"
    assert [sent["to"] for sent in fake.delivered] == [ALICE, BOB]


async def test_a_wrong_token_is_refused(fake: FakeWhatsApp, tmp_path: Path) -> None:
    whatsapp = WhatsAppAdapter(settings(fake.url, tmp_path, whatsapp_access_token="wrong"))
    result = await whatsapp.deliver(message(ALICE))
    await whatsapp.stop()
    assert (result.outcome.status, result.outcome.reason) == (
        "failed",
        "190 Invalid OAuth access token",
    )


def test_unconfigured_whatsapp_is_simulated(tmp_path: Path) -> None:
    assert isinstance(whatsapp_channel(Settings(data_dir=tmp_path)), SimulatedChannels)
    assert isinstance(whatsapp_channel(settings("http://x", tmp_path)), WhatsAppAdapter)
