"""Which adapter serves each channel: the ``reachstream.channels`` entry point named
after it, built with the worker's settings.

reachstream ships the webhook, the simulator (SMS, WhatsApp, in-app), the SMTP email
adapter and the push and web push adapters (delivery/push.py: the providers when their
credentials are set, else the simulator). An installed package's entry point of the same name wins
over the one shipped here: a real push provider replaces the simulator by being
installed. Email goes through the shipped ``email`` adapter only when an SMTP server
is set (``smtp_host``); without one, and without a provider's ``email``, the simulator
serves email too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from delivery.channels import ENTRY_POINT_GROUP, ChannelAdapter
from delivery.simulator import SimulatedChannels
from schemas.journey_nodes import Channel
from streams.settings import Settings

log = logging.getLogger(__name__)

OWN_DISTRIBUTION = "reachstream"
EMAIL = Channel.EMAIL.value


class AdapterConflict(RuntimeError):
    """Two installed packages offer an adapter for one channel."""


def _distribution(point: EntryPoint) -> str:
    dist = getattr(point, "dist", None)
    return str(dist.name).lower().replace("_", "-") if dist is not None else ""


def choose(points: Iterable[EntryPoint], smtp: bool) -> dict[str, EntryPoint]:
    """Channel -> the entry point that serves it (see the module's doc)."""
    own: dict[str, EntryPoint] = {}
    others: dict[str, list[EntryPoint]] = {}
    for point in points:
        if _distribution(point) == OWN_DISTRIBUTION:
            own[point.name] = point
        else:
            others.setdefault(point.name, []).append(point)
    chosen: dict[str, EntryPoint] = {}
    for name, offered in others.items():
        if len({point.value for point in offered}) > 1:
            found = ", ".join(sorted(f"{_distribution(p)} ({p.value})" for p in offered))
            raise AdapterConflict(f"several adapters for channel {name}: {found}")
        chosen[name] = offered[0]
    for name, point in own.items():
        if name == EMAIL and not smtp:
            continue
        chosen.setdefault(name, point)
    return chosen


def build(settings: Settings, points: Iterable[EntryPoint] | None = None) -> dict[str, Any]:
    """Channel -> adapter instance; one instance per factory, shared by its channels."""
    found = entry_points(group=ENTRY_POINT_GROUP) if points is None else points
    chosen = choose(found, smtp=bool(settings.smtp_host))
    instances: dict[Any, ChannelAdapter] = {}
    adapters: dict[str, ChannelAdapter] = {}
    for name, point in sorted(chosen.items()):
        factory = point.load()
        if factory not in instances:
            instances[factory] = factory(settings)
        adapters[name] = instances[factory]
        log.info("channel %s: %s", name, point.value)
    if EMAIL not in adapters:
        simulator = next((a for a in instances.values() if isinstance(a, SimulatedChannels)), None)
        adapters[EMAIL] = simulator or SimulatedChannels(settings)
    return adapters


def served(adapters: Mapping[str, Any]) -> dict[str, str]:
    """Channel -> what serves it: ``simulated``, or the adapter's class (no settings,
    no secrets), for ``/v1/status``."""
    return {
        name: "simulated"
        if isinstance(adapter, SimulatedChannels)
        else f"{type(adapter).__module__}.{type(adapter).__name__}"
        for name, adapter in sorted(adapters.items())
    }
