"""Moving one user's visits through their journeys' steps, and the rows, commands and
tag updates that make.

A visit at a step runs the step's handler (``engine.journeys.steps``), which names the
output taken or waits; the visit then follows the output to the next step, until a
step waits or the visit leaves. A wait that ends moves the visit on through the same
table.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from engine import devices as registry
from engine.journeys import goals
from engine.journeys.catalog import Catalog
from engine.journeys.schedule import TIME_ZONE_TAG, user_zone
from engine.journeys.state import Awaiting, JourneyState, Visit
from engine.journeys.steps import STEPS
from engine.journeys.types import Facts, JourneyResult
from engine.segments.defaults import COUNTRY, LANGUAGE
from engine.time import from_ms
from schemas.commands import Activity, command_id
from schemas.definitions import JourneyStatus
from schemas.journey_nodes import ADDRESS_TAGS
from schemas.journeys import JourneyDefinition

MAX_STEPS = 1000
"""Steps one visit may take in one call: the graph check refuses loops that do not
wait, this only bounds the damage of a bug."""


class Mover:
    """Moves one user's visits; collects what to emit."""

    def __init__(
        self, catalog: Catalog, state: JourneyState, facts: Facts, cause: str = ""
    ) -> None:
        self.catalog = catalog
        self.state = state
        self.facts = facts
        self.cause = cause
        """The identity of the input, for the rows it makes directly."""
        self.trigger = cause
        """What made the rows made from now on (every row carries it, outside its
        identity): the input (``cause``), or the instant a wait or entry came due
        (``timer:`` ms), a definition change, a stop (``engine.journeys.logic``)."""
        self.origin: tuple[str, int] | None = None
        """The input record's topic letter and offset, while its own rows are made."""
        self.event_at: int | None = None
        """The input's own instant (ms), once due visits have moved: the rows made from
        then on carry it as ``event_at`` (the others: their own instant)."""
        tags = facts.tags
        self.dimensions = {
            key: value
            for key, tag in DIMENSION_TAGS
            if type(value := tags.get(tag)) is str and value
        }
        """The user's country, language and time zone (default tags) for every row;
        those the user has no text for are left out of the rows (empty)."""
        self.result = JourneyResult(state)
        self._channels: dict[str, int] | None = None

    def paused(self, journey_id: str) -> bool:
        return self.catalog.status(journey_id) is JourneyStatus.PAUSED

    # --- moving -----------------------------------------------------------------------

    def wait_over(self, journey_id: str, at: int) -> None:
        """The wait of the user's visit of ``journey_id`` ended at ``at`` (its due
        instant, or an open or event seen while paused)."""
        visit = self.state.visits[journey_id]
        definition = self.catalog.version(journey_id, visit.version)
        if definition is None:
            self.leave(journey_id, visit, Activity.DROPPED, "version gone", at)
            return
        node = definition.node(visit.node)
        end = visit.due
        assert end is not None
        visit.due = None
        over = STEPS[type(node)].wait_over
        assert over is not None, f"{node.type} steps do not wait"
        over(self, visit, definition, node, end, at)

    def take(self, visit: Visit, definition: JourneyDefinition, output: str, now: int) -> None:
        """Leave the visit's step by ``output``, and run the steps after it."""
        node = definition.node(visit.node)
        visit.moving()
        visit.node = node.next[output]
        self.arrive(visit, definition, now, via=f"{node.id}.{output}")

    def arrive(
        self,
        visit: Visit,
        definition: JourneyDefinition,
        now: int,
        again: bool = False,
        announced: bool = False,
        via: str = "",
    ) -> None:
        """Run the step the visit is at, and the ones after it, until one waits
        (``again``: the step was entered before; ``announced``: its entry row is
        written; ``via``: the edge that led here, ``node.output``, which the entry row
        names so that edges can be counted)."""
        journey_id = definition.id
        for _ in range(MAX_STEPS):
            node = definition.node(visit.node)
            if not again:
                visit.steps += 1
                if not announced:
                    self.activity(journey_id, visit, node.id, Activity.ENTERED, now, via)
            again = announced = False
            output = STEPS[type(node)].arrive(self, visit, definition, node, now)
            if output is None:
                return  # waiting, or gone
            visit.moving()
            visit.node = node.next[output]
            via = f"{node.id}.{output}"
        self.leave(journey_id, visit, Activity.DROPPED, "too many steps", now)

    def wait(
        self, visit: Visit, awaiting: Awaiting, until: int, now: int, output: str
    ) -> str | None:
        """Wait for ``awaiting`` until ``until``; ``output`` at once if that has come."""
        if until <= now:
            return output
        visit.awaiting = awaiting
        visit.due = until
        return None

    def leave(
        self, journey_id: str, visit: Visit, activity: Activity, detail: str, now: int
    ) -> None:
        self.state.visits.pop(journey_id, None)
        self.activity(journey_id, visit, visit.node, activity, now, detail)
        if visit.message is not None:
            goals.left(self, journey_id, visit, now)

    # --- outputs ----------------------------------------------------------------------

    def command(
        self,
        visit: Visit,
        definition: JourneyDefinition,
        node: str,
        channel: str,
        preset: str | None,
        now: int,
        url: str | None = None,
    ) -> str:
        """Send: a command and its ``sent`` row; returns the command's id."""
        user = self.facts.user_id
        identity = command_id(definition.id, visit.version, visit.run, user, node, visit.steps)
        variant = visit.variant.name if visit.variant is not None else ""
        self.result.commands.append(
            {
                "command_id": identity,
                "user_id": user,
                "channel": str(channel),
                "preset": preset,
                "url": url,
                "journey_id": definition.id,
                "journey_version": visit.version,
                "run": visit.run,
                "step": node,
                "visit": visit.steps,
                "properties": visit.properties,
                "at": _instant(now),
                "address": self.address(channel),
                "tags": dict(self.facts.tags),
            }
        )
        devices = self.devices(channel)
        if devices:
            self.result.commands[-1]["devices"] = devices
        if variant or self.event_at is not None:
            self.extra(self.result.commands[-1], variant, now)
        self.result.activity.append(
            self.row(
                definition.id,
                visit.version,
                visit.run,
                node,
                Activity.SENT,
                now,
                "",
                identity,
                visit.steps,
                variant=variant,
            )
        )
        return identity

    def activity(
        self,
        journey_id: str,
        visit: Visit,
        node: str,
        activity: Activity,
        now: int,
        detail: str = "",
        cause: str = "",
        command: str = "",
    ) -> None:
        self.result.activity.append(
            self.row(
                journey_id,
                visit.version,
                visit.run,
                node,
                activity,
                now,
                detail,
                command,
                visit.steps,
                cause,
                visit.variant.name if visit.variant is not None else "",
            )
        )

    def row(
        self,
        journey_id: str,
        version: int,
        run: str,
        node: str,
        activity: Activity,
        now: int,
        detail: str = "",
        command: str = "",
        visit: int = 0,
        cause: str = "",
        variant: str = "",
    ) -> dict[str, Any]:
        """The fields of a ``schemas.commands.JourneyActivity`` row."""
        row = {
            "journey_id": journey_id,
            "journey_version": version,
            "run": run,
            "user_id": self.facts.user_id,
            "step": node,
            "activity": str(activity),
            "at": _instant(now),
            "detail": detail,
            "command_id": command,
            "visit": visit,
            "cause": cause,
            "trigger": self.trigger,
        }
        if self.origin is not None:
            row["source"], row["offset"] = self.origin
        if self.dimensions:
            row.update(self.dimensions)
        if variant or self.event_at is not None:
            self.extra(row, variant, now)
        return row

    def extra(self, fields: dict[str, Any], variant: str, now: int) -> None:
        """A row's or command's A/B ``variant`` and ``event_at``, in its fields when
        they have a value: an empty variant and an ``event_at`` equal to ``at`` are
        left out, as their defaults say the same (small records)."""
        if variant:
            fields["variant"] = variant
        event_at = self.event_at
        if event_at is not None and event_at != now:
            fields["event_at"] = from_ms(event_at)

    # --- what is known of the user ----------------------------------------------------

    def address(self, channel: str) -> str | None:
        """The user's address on ``channel``: its address tag's value, or else the
        oldest live email address or phone number of the channel in the registry."""
        tag = ADDRESS_TAGS.get(channel)  # type: ignore[call-overload]
        value = self.facts.tags.get(tag) if tag else None
        if isinstance(value, str) and value:
            return value
        for device in self.devices(channel):
            found = device.get("address") or device.get("number")
            if isinstance(found, str):
                return found
        return None

    def devices(self, channel: str) -> list[Any]:
        """The user's live devices of ``channel`` (their contract's fields)."""
        devices = self.facts.devices
        return devices.live(channel) if devices is not None and devices.devices else []

    def reachable(self, channel: str, address: bool = True) -> bool:
        """Not opted out of ``channel`` (and, with ``address``, a live device or an
        address on it): ``engine.devices.reachable``."""
        channels = self._channels
        if channels is None:
            devices = self.facts.devices
            channels = self._channels = registry.summary(devices) if devices else {}
        return registry.reachable(
            channel,
            channels.get(channel, 0),
            self.facts.tags,
            self.state.opted_out,
            address=address,
        )

    def zone(self, definition: JourneyDefinition, name: str) -> ZoneInfo:
        """The zone ``name`` (``user``: the user's own)."""
        if name == "user":
            return user_zone(self.facts.tags, definition.settings.timezone)
        return user_zone({}, name)


DIMENSION_TAGS = (("country", COUNTRY), ("language", LANGUAGE), ("timezone", TIME_ZONE_TAG))
"""Row field -> the default tag it takes."""


def _instant(ms: int) -> datetime:
    """``from_ms``, remembered for the last instant: every row of a step, and of every
    user in a sweep, carries the same one."""
    global _last_instant
    if _last_instant[0] != ms:
        _last_instant = (ms, from_ms(ms))
    return _last_instant[1]


_last_instant: tuple[int, datetime] = (0, from_ms(0))
