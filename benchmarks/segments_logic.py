"""Benchmark: the pure segment core (``agents.segments.step``) on one core.

20 mixed segments (tags of every kind, event windows, filters, last performed,
messages, references), a stream of events, tag updates and feedback over simulated
weeks for a population of users, in time order. Each input goes through what the agent
does around ``step``: the user's due timer first (a ``Tick``), then ``step``, and the
state stored as its JSON value, with the worker's garbage-collector settings. Prints
inputs/s and the JSON size of the users' states.
Not a timed test. ``python -m benchmarks.segments_logic [--inputs N] [--users N]``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from engine.segments import (
    DevicesChanged,
    Input,
    JourneyFeedback,
    SegmentIndex,
    Tick,
    UserState,
    step,
)
from schemas.events import Event
from schemas.feedback import Feedback
from schemas.segment_language import parse
from schemas.segments import SegmentDefinition
from schemas.tags import TagUpdate
from worker.runtime import tune_collector

START = datetime(2024, 5, 1, tzinfo=UTC)

SEGMENTS = {
    "hindi": 'T("Language", eq, "hi")',
    "portugal": 'T("Country", in, ["PT", "BR"])',
    "new-app": 'T("Application Version", gte, version("4.12"))',
    "paid": 'T("Plan", eq, "paid")',
    "tagged": 'T("Interests", contains_any, ["ski", "surf"])',
    "spent": 'T("Spent", gte, price(50, "EUR"))',
    "lapsed": 'L("ApplicationOpen", before, days_ago(7))',
    "active-today": 'L("ApplicationOpen", within, 24 hours)',
    "buyers": 'E("InAppPurchase", count >= 2, last 30 days)',
    "no-opens": 'E("ApplicationOpen", count = 0, last 7 days)',
    "screens-3d": 'E("ScreenOpen", count >= 1, exactly 3 days ago)',
    "burst": 'E("ScreenOpen", count >= 5, last 30 minutes)',
    "old-visitors": 'E("ScreenOpen", count between 2 and 10, between 3 and 10 days ago)',
    "big-spenders": 'E("InAppPurchase", count >= 1, last 14 days,'
    ' where A("price", gte, price(10, "EUR")))',
    "push-openers": 'M(opened, channel "push", last 7 days)',
    "ignored-welcome": 'M(received, journey "welcome", last 5 days)'
    ' * M(not opened, journey "welcome", last 5 days)',
    "recent-install": 'T("First Install", within_last, 7)',
    "hindi-buyers": 'S("hindi") * S("buyers")',
    "win-back": 'S("lapsed") - S("paid")',
    "engaged": 'S("buyers") + S("push-openers") + E("ScreenOpen", count >= 10, last 7 days)',
}


def definitions() -> dict[str, SegmentDefinition]:
    zones = ["UTC", "Asia/Kolkata", "Europe/Lisbon", "America/Sao_Paulo"]
    return {
        segment_id: SegmentDefinition(
            id=segment_id,
            name=segment_id,
            timezone=zones[number % len(zones)],
            condition=parse(text),
            version=1,
        )
        for number, (segment_id, text) in enumerate(SEGMENTS.items())
    }


def make_inputs(count: int, users: int, seed: int = 7) -> list[tuple[datetime, Input]]:
    """Inputs in time order, spread over roughly four weeks."""
    rng = random.Random(seed)
    spacing = timedelta(days=28) / count
    inputs: list[tuple[datetime, Input]] = []
    for number in range(count):
        at = START + spacing * number
        user = f"user-{rng.randrange(users)}"
        roll = rng.random()
        item: Input
        if roll < 0.35:
            attributes: dict[str, Any] = {}
            if rng.random() < 0.1:
                attributes = {
                    "language": rng.choice(["hi", "pt", "en"]),
                    "country": rng.choice(["IN", "PT", "BR"]),
                    "app_version": rng.choice(["4.11.2", "4.12.0", "4.12.1"]),
                }
            item = Event(user_id=user, name="ApplicationOpen", timestamp=at, attributes=attributes)
        elif roll < 0.7:
            item = Event(
                user_id=user, name="ScreenOpen", timestamp=at, attributes={"screen": "home"}
            )
        elif roll < 0.8:
            price = {"type": "price", "amount": str(rng.choice([2, 5, 15, 30])), "currency": "EUR"}
            item = Event.model_validate(
                {
                    "user_id": user,
                    "name": "InAppPurchase",
                    "timestamp": at,
                    "attributes": {"price": price},
                }
            )
        elif roll < 0.9:
            tags = rng.choice(
                [
                    {"Plan": rng.choice(["free", "paid"])},
                    {"Interests": ["ski", "chess"]},
                    {
                        "Spent": {
                            "type": "price",
                            "amount": str(rng.randrange(100)),
                            "currency": "EUR",
                        }
                    },
                ]
            )
            item = TagUpdate.model_validate({"user_id": user, "tags": tags, "timestamp": at})
        else:
            feedback = Feedback.model_validate(
                {
                    "command_id": f"cmd-{number}",
                    "user_id": user,
                    "status": rng.choice(["delivered", "delivered", "opened", "clicked"]),
                    "timestamp": at,
                    "channel": rng.choice(["push", "email"]),
                }
            )
            item = JourneyFeedback(feedback, rng.choice(["welcome", "promo"]), "s1")
        inputs.append((at, item))
    return inputs


def _user_of(item: Input) -> str:
    if isinstance(item, JourneyFeedback):
        return item.feedback.user_id
    assert not isinstance(item, Tick | DevicesChanged)
    return item.user_id


def run(inputs: list[tuple[datetime, Input]]) -> dict[str, Any]:
    table = definitions()
    index = SegmentIndex.build(table)
    states: dict[str, Any] = {}
    members: dict[str, dict[str, int]] = {}
    timers: dict[str, datetime] = {}
    ticks = changes = 0
    tick_seconds = 0.0
    started = time.perf_counter()
    for now, item in inputs:
        user = _user_of(item)
        state = UserState.from_json(states.get(user))
        memberships: Mapping[str, int] = members.get(user, {})
        due = timers.get(user)
        if due is not None and due <= now:
            ticked = time.perf_counter()
            result = step(index, table, state, memberships, Tick(), due)
            state, memberships = result.state, result.memberships
            ticks += 1
            changes += len(result.changes)
            tick_seconds += time.perf_counter() - ticked
        result = step(index, table, state, memberships, item, now)
        changes += len(result.changes)
        states[user] = result.state.to_json()
        members[user] = dict(result.memberships)
        if result.next_timer is None:
            timers.pop(user, None)
        else:
            timers[user] = result.next_timer
    seconds = time.perf_counter() - started
    sizes = [len(orjson.dumps(value)) for value in states.values()]
    return {
        "seconds": seconds,
        "tick_seconds": tick_seconds,
        "inputs": len(inputs),
        "ticks": ticks,
        "changes": changes,
        "users": len(states),
        "median_bytes": statistics.median(sizes),
        "p95_bytes": sorted(sizes)[int(len(sizes) * 0.95)],
        "max_bytes": max(sizes),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--inputs", type=int, default=200_000)
    parser.add_argument("--users", type=int, default=5_000)
    arguments = parser.parse_args()
    inputs = make_inputs(arguments.inputs, arguments.users)
    tune_collector()  # as in a worker
    figures = run(inputs)
    rate = figures["inputs"] / figures["seconds"]
    per_user = figures["inputs"] / figures["users"]
    print(
        f"{len(SEGMENTS)} segments, {figures['inputs']:,} inputs over 28 days for "
        f"{figures['users']:,} users ({per_user:.0f} inputs each), "
        f"{figures['ticks']:,} timer ticks, {figures['changes']:,} membership changes"
    )
    print(
        f"step (with ticks and state to/from JSON values): {figures['seconds']:.2f} s, "
        f"{rate:,.0f} inputs/s, {1e6 / rate:.1f} µs per input"
    )
    input_seconds = figures["seconds"] - figures["tick_seconds"]
    print(
        f"  inputs alone (apply + evaluate the affected segments + their timers): "
        f"{figures['inputs'] / input_seconds:,.0f} inputs/s; ticks: "
        f"{figures['ticks'] / figures['tick_seconds']:,.0f} ticks/s"
    )
    print(
        f"state JSON per user: median {figures['median_bytes']:.0f} B, "
        f"p95 {figures['p95_bytes']} B, max {figures['max_bytes']} B"
    )


if __name__ == "__main__":
    main()
