"""The journey step types: one handler per node type, in one table.

A step's ``arrive`` runs when a visit reaches it: it returns the output the visit
takes, or None when the visit waits there (or left the journey). A step that waits
has a ``wait_over``, run when the wait ends: it moves the visit on. Adding a step type
is adding its node model (``schemas.journeys``) and its entry in ``STEPS``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from pydantic_core import to_jsonable_python

from engine.journeys import goals
from engine.journeys.schedule import delay_end, silent_until
from engine.journeys.state import JourneyState, Variant, Visit
from engine.time import from_ms, to_ms
from schemas.commands import WEBHOOK, Activity
from schemas.identity import content_id
from schemas.journey_nodes import (
    ADDRESS_TAGS,
    ABSplitNode,
    DelayNode,
    ExitNode,
    MessageNode,
    ReachabilityNode,
    SegmentSplitNode,
    UpdateProfileNode,
    WaitForEventNode,
    WebhookNode,
)
from schemas.journeys import FrequencyCap, JourneyDefinition

if TYPE_CHECKING:
    from engine.journeys.mover import Mover


class Step(NamedTuple):
    arrive: Callable[[Mover, Visit, JourneyDefinition, Any, int], str | None]
    """(mover, visit, definition, node, now) -> the output taken, or None."""
    wait_over: Callable[[Mover, Visit, JourneyDefinition, Any, int, int], None] | None = None
    """(mover, visit, definition, node, end of the wait, now): the wait ended."""


# --- message --------------------------------------------------------------------------


def _message(
    mover: Mover, visit: Visit, definition: JourneyDefinition, node: MessageNode, now: int
) -> str | None:
    """Send, unless silent hours hold the message back (the visit waits) or the user
    opted out, has no address or reached the frequency cap (the visit goes on as if
    not opened)."""
    settings = definition.settings
    skip = "not_opened" if node.split_after else "next"
    if settings.silent_hours:
        zone = mover.zone(definition, "user")
        end = silent_until(settings.silent_hours, node.channel, from_ms(now), zone)
        if end is not None:
            visit.awaiting = "silent"
            visit.due = to_ms(end)
            return None
    journey_id = definition.id
    if not mover.reachable(node.channel, address=False):
        mover.activity(journey_id, visit, node.id, Activity.SUPPRESSED, now, "opted out")
        return skip
    tag = ADDRESS_TAGS.get(node.channel)
    # Reachable (engine.devices.reachable): a live device of the channel, or an address.
    if tag is not None and mover.address(node.channel) is None and not mover.devices(node.channel):
        # No command a provider could only refuse: the user goes on as if not opened.
        mover.activity(journey_id, visit, node.id, Activity.UNREACHABLE, now, f"no {tag}")
        return skip
    if not _counted_send(mover.state, settings.frequency_cap, now):
        mover.activity(journey_id, visit, node.id, Activity.CAPPED, now)
        return skip
    command = mover.command(visit, definition, node.id, node.channel, node.preset, now)
    if settings.goals:
        goals.sent(visit, definition, node.id, command, now)
    if node.split_after is None:
        return "next"
    visit.awaiting = "split"
    visit.command = command
    visit.due = now + node.split_after.ms
    return None


def _message_wait_over(
    mover: Mover,
    visit: Visit,
    definition: JourneyDefinition,
    node: MessageNode,
    end: int,
    now: int,
) -> None:
    if visit.awaiting == "split":
        # An open seen while paused wins if it came before the split ended (as when
        # the journey runs: at the very end, the timeout is first).
        if visit.opened_at is not None and visit.opened_at < end:
            mover.take(visit, definition, "opened", now)
        else:
            command = visit.command or ""
            mover.activity(definition.id, visit, node.id, Activity.NOT_OPENED, now, command=command)
            mover.take(visit, definition, "not_opened", now)
    else:  # silent hours over: try the step again
        visit.moving()
        mover.arrive(visit, definition, now, again=True)


CAP_HORIZON = 366 * 86_400_000
CAP_SENDS = 100
"""Sends older than a year, or beyond the last hundred, are forgotten (caps are at
most 100 messages and count back at most a year)."""


def _counted_send(state: JourneyState, cap: FrequencyCap | None, now: int) -> bool:
    """Whether a message may go out at ``now`` under ``cap``; if so it is counted."""
    sends = [at for at in state.sends if at > now - CAP_HORIZON]
    if cap is not None and sum(1 for at in sends if at > now - cap.period.ms) >= cap.messages:
        return False
    sends.append(now)
    state.sends = sends[-CAP_SENDS:]
    return True


# --- waits ----------------------------------------------------------------------------


def _delay(
    mover: Mover, visit: Visit, definition: JourneyDefinition, node: DelayNode, now: int
) -> str | None:
    zone = mover.zone(definition, node.timezone)
    end = to_ms(delay_end(node, from_ms(now), zone))
    return mover.wait(visit, "delay", end, now, "next")


def _delay_over(
    mover: Mover, visit: Visit, definition: JourneyDefinition, node: DelayNode, end: int, now: int
) -> None:
    mover.take(visit, definition, "next", now)


def _wait_for_event(
    mover: Mover, visit: Visit, definition: JourneyDefinition, node: WaitForEventNode, now: int
) -> str | None:
    """Wait for a branch's event (``engine.journeys.inputs`` sees it come)."""
    return mover.wait(visit, "event", now + node.timeout.ms, now, "timeout")


def _wait_for_event_over(
    mover: Mover,
    visit: Visit,
    definition: JourneyDefinition,
    node: WaitForEventNode,
    end: int,
    now: int,
) -> None:
    seen = visit.seen  # while paused
    if seen is not None and seen.at < end:
        mover.take(visit, definition, seen.branch, now)
    else:
        mover.take(visit, definition, "timeout", now)


# --- splits ---------------------------------------------------------------------------


def _segment_split(
    mover: Mover, visit: Visit, definition: JourneyDefinition, node: SegmentSplitNode, now: int
) -> str:
    return "in" if node.segment in mover.facts.members else "not_in"


def _ab_split(
    mover: Mover, visit: Visit, definition: JourneyDefinition, node: ABSplitNode, now: int
) -> str:
    name = _variant(node, _bucket(mover.facts.user_id, definition.id, node.id))
    visit.variant = Variant(name, visit.steps)
    return name


def _variant(node: ABSplitNode, bucket: int) -> str:
    for variant in node.variants:
        if bucket < variant.percent:
            return variant.name
        bucket -= variant.percent
    return node.variants[-1].name


def _bucket(user: str, journey: str, node: str) -> int:
    """0..99, stable per user and split step."""
    digest = hashlib.blake2b(f"{journey}\x00{node}\x00{user}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 100


def _reachability(
    mover: Mover, visit: Visit, definition: JourneyDefinition, node: ReachabilityNode, now: int
) -> str:
    return "reachable" if mover.reachable(node.channel) else "unreachable"


# --- actions --------------------------------------------------------------------------


def _update_profile(
    mover: Mover, visit: Visit, definition: JourneyDefinition, node: UpdateProfileNode, now: int
) -> str:
    user = mover.facts.user_id
    mover.result.tag_updates.append(
        {
            "user_id": user,
            "op": "set",
            "tags": to_jsonable_python(node.tags),
            "timestamp": from_ms(now),
            "update_id": content_id(
                "journey-tags", definition.id, visit.version, visit.run, user, node.id, visit.steps
            ),
        }
    )
    return "next"


def _webhook(
    mover: Mover, visit: Visit, definition: JourneyDefinition, node: WebhookNode, now: int
) -> str:
    mover.command(visit, definition, node.id, WEBHOOK, None, now, url=node.url)
    return "next"


def _exit(
    mover: Mover, visit: Visit, definition: JourneyDefinition, node: ExitNode, now: int
) -> None:
    mover.leave(definition.id, visit, Activity.EXITED, "exit", now)


STEPS: dict[type[Any], Step] = {
    MessageNode: Step(_message, _message_wait_over),
    DelayNode: Step(_delay, _delay_over),
    WaitForEventNode: Step(_wait_for_event, _wait_for_event_over),
    SegmentSplitNode: Step(_segment_split),
    ABSplitNode: Step(_ab_split),
    ReachabilityNode: Step(_reachability),
    UpdateProfileNode: Step(_update_profile),
    WebhookNode: Step(_webhook),
    ExitNode: Step(_exit),
}
"""Node type -> its step."""
