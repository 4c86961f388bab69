"""The SMS adapter against a Twilio-shaped local server (tests/fakes/messaging.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from yarl import URL

from delivery.channels import Message
from delivery.provider import ProviderUnavailable, References, Retries
from delivery.render import RenderedContent
from delivery.simulator import SimulatedChannels
from delivery.sms import SmsAdapter, idempotency_token, sms_channel
from delivery.tracking_config import tracking_key
from schemas.commands import SendCommand
from schemas.devices import PhoneNumber, device_id
from schemas.presets import SmsContent
from streams.settings import Settings
from tests.fakes.messaging import SID, TOKEN, FakeTwilio, running, twilio_error

ALICE = "+14155550101"
BOB = "+447911123456"
COMMAND_ID = "welcome:1:r1:sms:1:0123456789abcdef"


def settings(base: str, tmp_path: Path, **more: Any) -> Settings:
    values: dict[str, Any] = {
        "twilio_account_sid": SID,
        "twilio_auth_token": TOKEN,
        "twilio_from": "+15005550006",
        "twilio_base_url": base,
        "tracking_base_url": "https://reach.example.com",
        "tracking_secret": "sms-test-secret",
        "data_dir": tmp_path,
    }
    return Settings(**(values | more))


def message(*numbers: str, address: str | None = None, text: str = "Hello Ana") -> Message:
    command = SendCommand(
        command_id=COMMAND_ID,
        user_id="u1",
        channel="sms",
        preset="hello",
        journey_id="welcome",
        journey_version=1,
        run="r1",
        step="sms",
        visit=1,
        at="2026-12-01T10:00:00Z",
        address=address,
        devices=[PhoneNumber(number=number) for number in numbers],
    )
    content = RenderedContent(
        preset_id="hello", version=1, channel="sms", language=None, content=SmsContent(text=text)
    )
    return Message(command, content)


@pytest.fixture
async def fake() -> AsyncIterator[FakeTwilio]:
    provider = FakeTwilio()
    async with running(provider):
        yield provider


@pytest.fixture
async def adapter(fake: FakeTwilio, tmp_path: Path) -> AsyncIterator[SmsAdapter]:
    sms = SmsAdapter(settings(fake.url, tmp_path), Retries(first_wait=0.01))
    await sms.start()
    yield sms
    await sms.stop()


def alice() -> str:
    return device_id(PhoneNumber(number=ALICE))


async def test_each_number_gets_the_text_with_sender_and_signed_callback(
    fake: FakeTwilio, adapter: SmsAdapter, tmp_path: Path
) -> None:
    result = await adapter.deliver(message(ALICE, BOB))
    assert result.outcome.status == "delivered"
    assert fake.refused == []
    assert [(sent["To"], sent["Body"], sent["From"]) for sent in fake.delivered] == [
        (ALICE, "Hello Ana", "+15005550006"),
        (BOB, "Hello Ana", "+15005550006"),
    ]
    callback = URL(fake.delivered[0]["StatusCallback"])
    assert str(callback.with_query(None)) == "https://reach.example.com/t/sms/status"
    references = References(tracking_key(settings(fake.url, tmp_path)))
    reference = references.read(callback.query["ref"])
    assert reference is not None
    assert (reference.command_id, reference.user_id, reference.device_id) == (
        COMMAND_ID,
        "u1",
        alice(),
    )


async def test_a_messaging_service_replaces_the_sender(fake: FakeTwilio, tmp_path: Path) -> None:
    sms = SmsAdapter(
        settings(fake.url, tmp_path, twilio_from="", twilio_messaging_service_sid="MG0123")
    )
    assert (await sms.deliver(message(ALICE))).outcome.status == "delivered"
    await sms.stop()
    assert fake.delivered[0]["MessagingServiceSid"] == "MG0123"
    assert "From" not in fake.delivered[0]


async def test_without_devices_the_phone_tag_is_the_number(
    fake: FakeTwilio, adapter: SmsAdapter
) -> None:
    result = await adapter.deliver(message(address=ALICE))
    assert result.outcome.status == "delivered"
    assert [sent["To"] for sent in fake.delivered] == [ALICE]


async def test_no_number_fails(adapter: SmsAdapter) -> None:
    result = await adapter.deliver(message())
    assert (result.outcome.status, result.outcome.reason) == (
        "failed",
        "the user has no phone number",
    )


async def test_a_retried_command_is_not_delivered_twice(
    fake: FakeTwilio, adapter: SmsAdapter, tmp_path: Path
) -> None:
    await adapter.deliver(message(ALICE))
    # The same process skips the number it sent to.
    assert (await adapter.deliver(message(ALICE))).outcome.status == "delivered"
    assert fake.calls == 1
    # Another process (a restart, another worker) asks again with the same token, and
    # the provider does not deliver it twice.
    other = SmsAdapter(settings(fake.url, tmp_path))
    assert (await other.deliver(message(ALICE))).outcome.status == "delivered"
    await other.stop()
    assert fake.calls == 2
    assert len(fake.delivered) == 1


def test_the_idempotency_token_is_the_commands_and_the_devices() -> None:
    token = idempotency_token(COMMAND_ID, alice())
    assert token == idempotency_token(COMMAND_ID, alice())
    assert token != idempotency_token(COMMAND_ID, "another-device")
    assert token != idempotency_token(COMMAND_ID.replace(":1:", ":2:", 1), alice())


@pytest.mark.parametrize("code", [21211, 21614])
async def test_an_invalid_number_fails_and_is_unregistered(
    fake: FakeTwilio, adapter: SmsAdapter, code: int
) -> None:
    fake.script[ALICE] = [twilio_error(400, code, f"The 'To' number {ALICE} is not valid.")]
    result = await adapter.deliver(message(ALICE))
    assert result.outcome.status == "failed"
    assert result.outcome.reason == f"{code} The 'To' number {ALICE} is not valid."
    assert result.unregistered == (alice(),)
    assert result.later == ()


async def test_a_stopped_number_opts_the_user_out(fake: FakeTwilio, adapter: SmsAdapter) -> None:
    fake.script[ALICE] = [twilio_error(400, 21610, "Attempt to send to unsubscribed recipient")]
    result = await adapter.deliver(message(ALICE))
    assert result.outcome.status == "failed"
    assert result.outcome.reason is not None
    assert result.outcome.reason.startswith("21610")
    assert [later.status for later in result.later] == ["unsubscribed"]
    assert result.unregistered == ()


async def test_one_invalid_number_of_two(fake: FakeTwilio, adapter: SmsAdapter) -> None:
    fake.script[ALICE] = [twilio_error(400, 21211, "invalid")]
    result = await adapter.deliver(message(ALICE, BOB))
    assert result.outcome.status == "delivered"
    assert result.unregistered == (alice(),)
    assert [sent["To"] for sent in fake.delivered] == [BOB]


async def test_another_refusal_fails_with_the_providers_reason(
    fake: FakeTwilio, adapter: SmsAdapter
) -> None:
    fake.script[ALICE] = [twilio_error(400, 21408, "Permission to send to this region")]
    result = await adapter.deliver(message(ALICE))
    assert result.outcome.reason == "21408 Permission to send to this region"
    assert result.unregistered == ()


async def test_429_and_5xx_are_tried_again_honouring_retry_after(
    fake: FakeTwilio, adapter: SmsAdapter
) -> None:
    fake.script[ALICE] = [
        twilio_error(429, 20429, "Too Many Requests", **{"Retry-After": "0"}),
        twilio_error(503, 20500, "Service unavailable"),
    ]
    result = await adapter.deliver(message(ALICE))
    assert result.outcome.status == "delivered"
    assert fake.calls == 3
    assert len(fake.delivered) == 1


async def test_a_provider_down_on_every_attempt_raises_for_the_worker(
    fake: FakeTwilio, adapter: SmsAdapter
) -> None:
    fake.script[ALICE] = [twilio_error(500, 20500, "down")] * 3
    with pytest.raises(ProviderUnavailable, match="answered 500"):
        await adapter.deliver(message(ALICE))
    assert fake.calls == 3


async def test_a_long_retry_after_is_left_to_the_worker(
    fake: FakeTwilio, adapter: SmsAdapter
) -> None:
    fake.script[ALICE] = [twilio_error(429, 20429, "slow down", **{"Retry-After": "120"})]
    with pytest.raises(ProviderUnavailable) as raised:
        await adapter.deliver(message(ALICE))
    assert raised.value.retry_after == 120
    assert fake.calls == 1


async def test_a_wrong_token_is_refused_by_the_provider(fake: FakeTwilio, tmp_path: Path) -> None:
    sms = SmsAdapter(settings(fake.url, tmp_path, twilio_auth_token="not-the-token"))
    result = await sms.deliver(message(ALICE))
    await sms.stop()
    assert (result.outcome.status, result.outcome.reason) == ("failed", "20003 Authenticate")
    assert fake.refused == ["authentication"]


async def test_the_token_can_come_from_a_file(fake: FakeTwilio, tmp_path: Path) -> None:
    secret_file = tmp_path / "twilio-token"
    secret_file.write_text(TOKEN + "\n")
    configured = settings(
        fake.url, tmp_path, twilio_auth_token=None, twilio_auth_token_file=secret_file
    )
    sms = SmsAdapter(configured)
    assert (await sms.deliver(message(ALICE))).outcome.status == "delivered"
    await sms.stop()
    assert TOKEN not in repr(configured)
    assert TOKEN not in str(configured.model_dump())


def test_unconfigured_sms_is_simulated(tmp_path: Path) -> None:
    assert isinstance(sms_channel(Settings(data_dir=tmp_path)), SimulatedChannels)
    assert isinstance(sms_channel(settings("http://x", tmp_path)), SmsAdapter)


def test_a_configured_account_needs_a_sender_and_a_token(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="REACH_TWILIO_FROM"):
        SmsAdapter(settings("http://x", tmp_path, twilio_from=""))
    with pytest.raises(ValueError, match="REACH_TWILIO_AUTH_TOKEN"):
        SmsAdapter(settings("http://x", tmp_path, twilio_auth_token=None))


async def test_a_dead_number_before_a_retryable_fault_is_still_named_gone(
    fake: FakeTwilio, adapter: SmsAdapter
) -> None:
    fake.script[ALICE] = [twilio_error(400, 21211, "invalid")]
    fake.script[BOB] = [twilio_error(429, 20429, "slow down", **{"Retry-After": "120"})]
    with pytest.raises(ProviderUnavailable) as raised:
        await adapter.deliver(message(ALICE, BOB))
    assert raised.value.unregistered == (alice(),)
    assert raised.value.retry_after == 120
