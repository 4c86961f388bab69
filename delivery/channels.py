"""Channel adapters: how a rendered message reaches a user, one adapter per channel.

An adapter is found by channel name among the ``reachstream.channels`` entry points
(a factory taking the worker's settings), so a provider can be added by installing a
package, without touching the engine:

    [project.entry-points."reachstream.channels"]
    sms = "my_provider.reach:SmsAdapter"

``deliver`` never raises for a message that cannot be delivered: it returns an
``Outcome`` saying why, which becomes ``failed`` / ``bounced`` feedback. It may raise
for a fault of its own (a provider down), and the worker retries the command.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

from delivery.render import RenderedContent
from schemas.commands import SendCommand

ENTRY_POINT_GROUP = "reachstream.channels"


@dataclass(frozen=True, slots=True)
class Message:
    """A send command with its content rendered for the user."""

    command: SendCommand
    content: RenderedContent | None
    """None for a webhook step (it posts the command itself)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    status: Literal["delivered", "failed", "bounced"]
    reason: str | None = None
    at: datetime | None = None
    """When it happened, where the channel says (a simulated delay); else now."""


@dataclass(frozen=True, slots=True)
class Later:
    """Feedback an adapter learns of later (an open, a click), at ``at``."""

    status: Literal["opened", "clicked", "unsubscribed"]
    at: datetime


@dataclass(frozen=True, slots=True)
class Result:
    outcome: Outcome
    later: tuple[Later, ...] = field(default_factory=tuple)
    """What a simulated channel decides will follow; real channels report it through
    the HTTP API (tracking pixel, click redirect) or a provider's callback."""
    unregistered: tuple[str, ...] = field(default_factory=tuple)
    """Ids (``schemas.devices.device_id``) of the command's devices the provider said
    are gone (APNs 410 ``Unregistered``, FCM ``UNREGISTERED``, web push 404/410): the
    worker unregisters them from the user's devices."""


class ChannelAdapter(Protocol):
    channels: frozenset[str]
    """The channel names it serves."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def deliver(self, message: Message) -> Result: ...
