"""Which adapter serves each channel: the installed entry points, a provider's over
the ones shipped here, email through SMTP only when a server is set."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, cast

import pytest

from delivery.adapters import AdapterConflict, build, choose
from delivery.simulator import SimulatedChannels
from delivery.webhook import WebhookAdapter
from streams.settings import Settings


@dataclass
class Point:
    """Stands in for importlib.metadata.EntryPoint."""

    name: str
    value: str
    distribution: str
    factory: Any = None

    @property
    def dist(self) -> Any:
        return SimpleNamespace(name=self.distribution)

    def load(self) -> Any:
        return self.factory


class ProviderSms:
    channels = frozenset({"sms"})

    def __init__(self, settings: Settings) -> None:
        self.settings = settings


SHIPPED = [
    Point("webhook", "delivery.webhook:WebhookAdapter", "reachstream", WebhookAdapter),
    *(
        Point(name, "delivery.simulator:SimulatedChannels", "reachstream", SimulatedChannels)
        for name in ("push", "web_push", "sms", "whatsapp", "in_app")
    ),
]
SMTP = Point("email", "delivery.email:EmailAdapter", "reachstream", object)


def names(points: list[Point], smtp: bool) -> dict[str, str]:
    chosen = choose(cast(Any, points), smtp)
    return {name: point.value for name, point in chosen.items()}


def test_the_shipped_adapters_serve_their_channels() -> None:
    chosen = names(SHIPPED, smtp=False)
    assert chosen["webhook"] == "delivery.webhook:WebhookAdapter"
    assert chosen["sms"] == "delivery.simulator:SimulatedChannels"
    assert "email" not in chosen


def test_email_goes_through_smtp_only_with_a_server() -> None:
    assert "email" not in names([*SHIPPED, SMTP], smtp=False)
    assert names([*SHIPPED, SMTP], smtp=True)["email"] == SMTP.value


def test_an_installed_provider_replaces_the_simulator() -> None:
    provider = Point("sms", "acme_sms.reach:SmsAdapter", "acme-sms")
    assert names([provider, *SHIPPED], smtp=False)["sms"] == provider.value
    assert names([*SHIPPED, provider], smtp=False)["sms"] == provider.value
    mail = Point("email", "acme_mail.reach:MailAdapter", "acme-mail")
    assert names([*SHIPPED, SMTP, mail], smtp=False)["email"] == mail.value


def test_two_providers_for_one_channel_are_refused() -> None:
    one = Point("sms", "acme_sms.reach:SmsAdapter", "acme-sms")
    other = Point("sms", "zeta.reach:Sms", "zeta")
    with pytest.raises(AdapterConflict, match="several adapters for channel sms"):
        choose(cast(Any, [one, other, *SHIPPED]), smtp=False)


def test_build_shares_one_instance_per_factory_and_simulates_email() -> None:
    provider = Point("sms", "acme_sms.reach:SmsAdapter", "acme-sms", ProviderSms)
    adapters = build(Settings(), cast(Any, [*SHIPPED, provider]))
    assert isinstance(adapters["sms"], ProviderSms)
    assert isinstance(adapters["webhook"], WebhookAdapter)
    assert isinstance(adapters["email"], SimulatedChannels)
    assert adapters["email"] is adapters["push"] is adapters["in_app"]


def test_the_installed_entry_points() -> None:
    """The package's own entry points are installed (an editable install)."""
    adapters = build(Settings())
    assert isinstance(adapters["webhook"], WebhookAdapter)
    for channel in ("push", "web_push", "sms", "whatsapp", "in_app", "email"):
        assert isinstance(adapters[channel], SimulatedChannels), channel
