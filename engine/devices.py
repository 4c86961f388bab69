"""A user's device registry (``schemas.devices``) and the one rule of reachability.

The registry is plain JSON in memory as it is stored: the devices as their contract's
fields (what a send command carries), when each was registered, and the user's
explicit consent per channel. ``apply`` folds a ``DeviceUpdate`` into it; ``summary``
sums it up per channel for segment conditions; ``reachable`` is the rule every reader
of reachability shares (segment conditions, the journeys' reachability and message
steps, the user profiles' projection).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, NamedTuple

from schemas.devices import MAX_DEVICES, DeviceOp, DeviceUpdate
from schemas.journey_nodes import ADDRESS_TAGS, OPT_OUT_TAG

JSON = Any

LIVE = 1
"""Summary flag: the user has a live device of the channel."""
OPTED_OUT = 2
"""Summary flag: the user's last word on the channel was an opt-out."""
OPTED_IN = 4
"""Summary flag: the user's last word on the channel was an opt-in."""


class Registry(NamedTuple):
    """One user's devices and consent. Never mutated: ``apply`` returns a new one."""

    devices: Mapping[str, Mapping[str, JSON]] = {}
    """Device id -> the device's fields (``schemas.devices.Device`` as JSON)."""
    since: Mapping[str, int] = {}
    """Device id -> when it was registered (ms; an update keeps the first instant)."""
    consent: Mapping[str, bool] = {}
    """Channel -> the user's last word on it (False: opted out, True: opted in)."""

    def to_json(self) -> dict[str, JSON]:
        data: dict[str, JSON] = {}
        if self.devices:
            data["d"] = self.devices
            data["a"] = self.since
        if self.consent:
            data["c"] = self.consent
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, JSON] | None) -> Registry:
        if not data:
            return NO_DEVICES
        return tuple.__new__(cls, (data.get("d", {}), data.get("a", {}), data.get("c", {})))

    def live(self, channel: str) -> list[Mapping[str, JSON]]:
        """The live devices serving ``channel``, oldest registration first."""
        found = [
            (self.since.get(key, 0), key, device)
            for key, device in self.devices.items()
            if channel in channels_of(device)
        ]
        return [device for _, _, device in sorted(found, key=lambda item: item[:2])]


NO_DEVICES = Registry()
"""The registry of a user with no devices and no word on any channel."""


def channels_of(device: Mapping[str, JSON]) -> tuple[str, ...]:
    """The channels a device serves (``schemas.devices.device_channels`` on its JSON)."""
    kind = device.get("kind")
    if kind == "push":
        return ("push",)
    if kind == "web_push":
        return ("web_push",)
    if kind == "phone":
        return ("sms", "whatsapp") if device.get("whatsapp") else ("sms",)
    if kind == "email":
        return ("email",)
    return ()


class Applied(NamedTuple):
    registry: Registry
    refused: str | None = None
    """Why the update was not applied (None: applied, or nothing to do)."""


def apply(registry: Registry, update: DeviceUpdate, now_ms: int) -> Applied:
    """Fold ``update`` in at ``now_ms``. Registering an id already there updates it
    (keeping its first registration instant); unregistering an unknown id changes
    nothing; a registration beyond ``MAX_DEVICES`` live devices is refused."""
    op = update.op
    if op is DeviceOp.OPT_OUT or op is DeviceOp.OPT_IN:
        assert update.channel is not None
        return Applied(consent(registry, str(update.channel), op is DeviceOp.OPT_IN))
    key = update.target
    assert key is not None
    if op is DeviceOp.UNREGISTER:
        if key not in registry.devices:
            return Applied(registry)
        devices = {k: v for k, v in registry.devices.items() if k != key}
        since = {k: v for k, v in registry.since.items() if k != key}
        return Applied(registry._replace(devices=devices, since=since))
    assert update.device is not None
    fields = update.device.model_dump(mode="json")
    if key not in registry.devices and len(registry.devices) >= MAX_DEVICES:
        return Applied(
            registry,
            f"the user has {len(registry.devices)} live devices, the most one user may have"
            f" ({MAX_DEVICES}): unregister one first",
        )
    if registry.devices.get(key) == fields:
        return Applied(registry)
    devices = {**registry.devices, key: fields}
    since = {**registry.since, key: registry.since.get(key, now_ms)}
    return Applied(registry._replace(devices=devices, since=since))


def consent(registry: Registry, channel: str, opted_in: bool) -> Registry:
    """The registry with the user's word on ``channel``."""
    if registry.consent.get(channel) is opted_in:
        return registry
    return registry._replace(consent={**registry.consent, channel: opted_in})


def summary(registry: Registry) -> dict[str, int]:
    """Channel -> flags (``LIVE``, ``OPTED_OUT``, ``OPTED_IN``): what segment
    conditions read (kept in the segment state, so they need not read the registry)."""
    flags: dict[str, int] = {}
    for device in registry.devices.values():
        for channel in channels_of(device):
            flags[channel] = LIVE
    for channel, opted_in in registry.consent.items():
        flags[channel] = flags.get(channel, 0) | (OPTED_IN if opted_in else OPTED_OUT)
    return flags


def reachable(
    channel: str,
    flags: int,
    tags: Mapping[str, JSON],
    remembered: Collection[str] = (),
    *,
    address: bool = True,
) -> bool:
    """Whether a user is reachable on ``channel``: the one rule.

    ``flags`` is the channel's ``summary`` of the registry, ``tags`` the user's tags,
    ``remembered`` the channels the journey engine remembers an unsubscribe from (from
    before the registry kept consent). Not reachable when opted out: the
    ``Unsubscribed`` tag lists the channel, or the registry's last word on it is an
    opt-out, or (the registry having no word on it) an unsubscribe is remembered. Else
    (with ``address``) reachable when the user has a live device of the channel, or
    the channel's address tag (``ADDRESS_TAGS``: ``Email``, ``Phone``, ...) has a
    value, or the channel needs no address (in-app)."""
    if opted_out(channel, flags, tags, remembered):
        return False
    if not address or flags & LIVE:
        return True
    tag = ADDRESS_TAGS.get(channel)  # type: ignore[call-overload]
    return tag is None or bool(tags.get(tag))


def opted_out(
    channel: str, flags: int, tags: Mapping[str, JSON], remembered: Collection[str] = ()
) -> bool:
    """The opt-out half of ``reachable``."""
    if flags & OPTED_OUT:
        return True
    listed = tags.get(OPT_OUT_TAG)
    if isinstance(listed, list) and channel in listed:
        return True
    return not flags & OPTED_IN and channel in remembered
