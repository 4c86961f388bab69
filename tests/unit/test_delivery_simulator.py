"""The simulated channels: the same command always meets the same fate, and over many
commands the fates follow the configured probabilities and delays."""

from __future__ import annotations

import statistics
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from delivery.channels import Message
from delivery.simulator import DEFAULTS, SimulatedChannels, decide, profiles
from schemas.commands import SendCommand
from streams.settings import Settings, SimulatedChannel

SENT = datetime(2026, 12, 10, 8, tzinfo=UTC)
MANY = 20_000


def command(n: int, channel: str = "email", **fields: Any) -> SendCommand:
    values: dict[str, Any] = {
        "command_id": f"j:1:r:{channel}:{n}:digest",
        "user_id": f"u{n}",
        "channel": channel,
        "preset": "p",
        "journey_id": "j",
        "journey_version": 1,
        "run": "r",
        "step": channel,
        "visit": 1,
        "at": SENT,
        "address": f"u{n}@example.com",
    }
    return SendCommand.model_validate(values | fields)


def test_the_same_command_meets_the_same_fate_another_seed_another() -> None:
    profile = DEFAULTS["sms"]
    fates = [decide(command(n, "sms"), profile, seed=7) for n in range(200)]
    assert fates == [decide(command(n, "sms"), profile, seed=7) for n in range(200)]
    assert fates != [decide(command(n, "sms"), profile, seed=8) for n in range(200)]


@pytest.mark.parametrize("channel", ["push", "email", "sms", "whatsapp"])
def test_rates_follow_the_profile(channel: str) -> None:
    profile = DEFAULTS[channel]
    fates = [decide(command(n, channel), profile, seed=0) for n in range(MANY)]
    delivered = [fate for fate in fates if fate.outcome.status == "delivered"]
    opened = [fate for fate in delivered if any(x.status == "opened" for x in fate.later)]
    clicked = [fate for fate in opened if any(x.status == "clicked" for x in fate.later)]
    # Binomial: within about four standard deviations.
    assert len(delivered) / MANY == pytest.approx(profile.delivered, abs=0.01)
    assert len(opened) / len(delivered) == pytest.approx(profile.opened, abs=0.015)
    assert len(clicked) / len(opened) == pytest.approx(profile.clicked, abs=0.04)
    undelivered = {fate.outcome.status for fate in fates} - {"delivered"}
    assert undelivered == ({"bounced"} if channel in ("email", "sms") else {"failed"})


def test_the_default_open_rates() -> None:
    opened = {channel: profile.opened for channel, profile in DEFAULTS.items()}
    assert opened["push"] == 0.08
    assert opened["email"] == 0.25
    assert opened["sms"] == 0.45
    assert opened["whatsapp"] == 0.60
    assert DEFAULTS["push"].open_hours == 2
    assert DEFAULTS["email"].open_hours == 20


def test_delays_follow_the_profile_and_come_in_order() -> None:
    profile = DEFAULTS["email"]
    open_delays: list[float] = []
    for n in range(MANY):
        fate = decide(command(n), profile, seed=0)
        if fate.outcome.status != "delivered":
            continue
        at = fate.outcome.at
        assert at is not None
        # Delivered after half to one and a half times the delivery delay.
        assert timedelta(seconds=2.5) <= at - SENT <= timedelta(seconds=7.5)
        times = {later.status: later.at for later in fate.later}
        if "opened" in times:
            open_delays.append((times["opened"] - at).total_seconds() / 3600)
            assert all(times["opened"] <= when for when in times.values())
    # An exponential delay: mean and median (mean * ln 2) as configured.
    assert statistics.mean(open_delays) == pytest.approx(20, rel=0.06)
    assert statistics.median(open_delays) == pytest.approx(20 * 0.693, rel=0.08)


def test_a_message_without_an_address_is_not_sent_in_app_needs_none() -> None:
    fate = decide(command(1, "sms", address=None), DEFAULTS["sms"], seed=0)
    assert (fate.outcome.status, fate.outcome.reason) == ("failed", "no sms address")
    fate = decide(command(1, "in_app", address=None), DEFAULTS["in_app"], seed=0)
    assert fate.outcome.status == "delivered"


def test_a_push_to_registered_devices_needs_no_address_tag() -> None:
    device = {"kind": "push", "platform": "android", "token": "t1", "app_id": "com.ex"}
    fate = decide(command(1, "push", address=None, devices=[device]), DEFAULTS["push"], seed=0)
    assert fate.outcome.status == "delivered"


def test_overrides_change_only_what_they_give() -> None:
    merged = profiles({"email": SimulatedChannel(opened=1.0, open_hours=1)})
    assert merged["email"].opened == 1.0
    assert merged["email"].open_hours == 1
    assert merged["email"].delivered == DEFAULTS["email"].delivered
    assert merged["push"] == DEFAULTS["push"]
    everyone = [decide(command(n), merged["email"], seed=0) for n in range(500)]
    delivered = [fate for fate in everyone if fate.outcome.status == "delivered"]
    assert all(fate.later and fate.later[0].status == "opened" for fate in delivered)


def test_overrides_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REACH_SIMULATOR", '{"sms": {"delivered": 0.5, "click_minutes": 2}}')
    assert Settings().simulator == {"sms": SimulatedChannel(delivered=0.5, click_minutes=2)}
    for wrong in ('{"sms": {"opened": 1.5}}', '{"fax": {}}', '{"sms": {"typo": 1}}'):
        monkeypatch.setenv("REACH_SIMULATOR", wrong)
        with pytest.raises(ValueError, match="simulator"):
            Settings()


async def test_the_adapter_decides_with_the_settings() -> None:
    settings = Settings(simulator={"push": SimulatedChannel(delivered=0.0)}, simulator_seed=3)
    adapter = SimulatedChannels(settings)
    await adapter.start()
    result = await adapter.deliver(Message(command(1, "push", address="token-1"), None))
    assert result.outcome.status == "failed"
    unknown = await adapter.deliver(Message(command(1, "webhook"), None))
    assert unknown.outcome.reason == "no simulated channel webhook"
    await adapter.stop()
