"""A simulated provider for push, web push, SMS, WhatsApp, in-app (and email without
an SMTP server): it sends nothing, and decides what a real audience would do.

Per channel, a probability of delivery, of an open once delivered, of a click and of an
unsubscribe once opened, and delays: delivery after ``delivery_seconds`` (give or take
half), an open after an exponential delay of mean ``open_hours``, a click or an
unsubscribe after one of mean ``click_minutes`` past the open. Every draw is a hash of
the seed, the command id and what is drawn, so a replay, a retry or another worker
decides the same; instants count from the command's ``at``, the simulated instant the
journey sent it. The opens and clicks are ``later`` feedback: the worker emits each
when the clock reaches it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

from delivery.channels import Later, Message, Outcome, Result
from engine.time import from_ms, to_ms
from schemas.commands import SendCommand
from streams.settings import Settings, SimulatedChannel, SimulatedChannelName


@dataclass(frozen=True, slots=True)
class Profile:
    delivered: float
    opened: float
    """Given delivered."""
    clicked: float
    """Given opened."""
    unsubscribed: float
    """Given opened."""
    delivery_seconds: float
    open_hours: float
    """Mean delay from delivery to the open."""
    click_minutes: float
    """Mean delay from the open to a click or an unsubscribe."""


DEFAULTS: dict[str, Profile] = {
    "push": Profile(0.97, 0.08, 0.30, 0.0, 1, 2, 2),
    "web_push": Profile(0.95, 0.05, 0.25, 0.0, 1, 2, 2),
    "email": Profile(0.98, 0.25, 0.15, 0.005, 5, 20, 5),
    "sms": Profile(0.99, 0.45, 0.10, 0.002, 3, 0.5, 5),
    "whatsapp": Profile(0.98, 0.60, 0.20, 0.001, 2, 1, 5),
    "in_app": Profile(1.0, 0.30, 0.25, 0.0, 0, 1, 1),
}
SIMULATED = frozenset(DEFAULTS)
ADDRESSLESS = frozenset({"in_app"})
"""Channels that reach a user without an address (the app asks for its messages)."""
BOUNCING = frozenset({"email", "sms"})
"""Channels whose undelivered messages come back as ``bounced``, not ``failed``."""


def profiles(overrides: Mapping[SimulatedChannelName, SimulatedChannel]) -> dict[str, Profile]:
    """The defaults with the settings' overrides (only the fields they give)."""
    merged = dict(DEFAULTS)
    for channel, override in overrides.items():
        given = override.model_dump(exclude_none=True)
        merged[channel] = replace(merged[channel], **given)
    return merged


def draw(seed: int, command_id: str, what: str) -> float:
    """A uniform number in [0, 1), the same for the same seed, command and draw."""
    digest = hashlib.blake2b(f"{seed}\0{command_id}\0{what}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _exponential(uniform: float, mean_ms: float) -> int:
    return round(-mean_ms * math.log1p(-uniform))


def decide(command: SendCommand, profile: Profile, seed: int) -> Result:
    """What happens to ``command``: its outcome, and the opens and clicks to follow."""
    channel = command.channel
    if channel not in ADDRESSLESS and not command.address and not command.devices:
        return Result(Outcome("failed", f"no {channel} address"))

    def chance(what: str) -> float:
        return draw(seed, command.command_id, what)

    sent = to_ms(command.at)
    delivered_at = sent + round(profile.delivery_seconds * 1000 * (0.5 + chance("delay")))
    if chance("delivered") >= profile.delivered:
        reason = "simulated: undeliverable"
        if channel in BOUNCING:
            return Result(Outcome("bounced", reason, from_ms(delivered_at)))
        return Result(Outcome("failed", reason, from_ms(delivered_at)))
    delivered = Outcome("delivered", None, from_ms(delivered_at))
    if chance("opened") >= profile.opened:
        return Result(delivered)
    opened_at = delivered_at + _exponential(chance("open delay"), profile.open_hours * 3_600_000)
    later = [Later("opened", from_ms(opened_at))]
    click_mean = profile.click_minutes * 60_000
    if chance("clicked") < profile.clicked:
        clicked_at = opened_at + _exponential(chance("click delay"), click_mean)
        later.append(Later("clicked", from_ms(clicked_at)))
    if chance("unsubscribed") < profile.unsubscribed:
        left_at = opened_at + _exponential(chance("unsubscribe delay"), click_mean)
        later.append(Later("unsubscribed", from_ms(left_at)))
    return Result(delivered, tuple(later))


class SimulatedChannels:
    """The adapter: every simulated channel, with the settings' profiles and seed."""

    channels = SIMULATED

    def __init__(self, settings: Settings) -> None:
        self.profiles = profiles(settings.simulator)
        self.seed = settings.simulator_seed

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def deliver(self, message: Message) -> Result:
        profile = self.profiles.get(message.command.channel)
        if profile is None:
            return Result(Outcome("failed", f"no simulated channel {message.command.channel}"))
        return decide(message.command, profile, self.seed)
