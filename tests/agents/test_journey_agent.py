"""The journey wiring in the worker's segment runtime: commands leave once per step
visit however often inputs, timers or audience runs come again."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from agents.segments.agent import RUNS_KEY, SegmentRuntime
from schemas.definitions import Definitions, JourneyAction
from schemas.events import Event
from schemas.feedback import Feedback, FeedbackStatus
from schemas.journeys import JourneyDefinition
from schemas.segment_language import parse
from schemas.segments import SegmentDefinition
from schemas.tags import TagUpdate
from tests.agents.conftest import Worker
from tests.agents.test_segment_agent import Outputs
from tests.unit.journey_sim import preset

NOW = datetime(2026, 12, 10, 8, tzinfo=UTC)

JOURNEY = {
    "id": "welcome",
    "name": "Welcome",
    "entries": [{"kind": "audience", "segment": "portugal"}, {"kind": "trigger",
                                                              "match": {"event": "Signup"}}],
    "start": "email",
    "nodes": [
        {"id": "email", "type": "message", "channel": "email", "preset": "hello",
         "split_after": {"amount": 1, "unit": "days"},
         "next": {"opened": "done", "not_opened": "sms"}},
        {"id": "sms", "type": "message", "channel": "sms", "preset": "hello-sms",
         "next": {"next": "done"}},
        {"id": "done", "type": "exit"},
    ],
}  # fmt: skip


async def ready(worker: Worker) -> tuple[SegmentRuntime, Outputs, Definitions]:
    runtime: SegmentRuntime = worker.system.segments
    outputs = Outputs()
    runtime._producer = outputs
    await runtime.table.start()
    await runtime.table.recover(range(worker.engine.settings.partitions))
    registry = Definitions()
    segment = SegmentDefinition(
        id="portugal", name="PT", condition=parse('T("Country", eq, "PT")'), version=0
    )
    registry.fold(registry.prepare(segment, NOW))
    for preset_id, channel in (("hello", "email"), ("hello-sms", "sms")):
        registry.fold(registry.prepare_preset(preset(preset_id, channel), NOW))
    registry.fold(registry.prepare_journey(JourneyDefinition.model_validate(JOURNEY), NOW))
    registry.fold(registry.prepare_action("welcome", JourneyAction.LAUNCH, NOW))
    await runtime.load(registry.segments, dict(registry.journeys), NOW)
    await runtime.on_recovered(set(range(worker.engine.settings.partitions)))
    await runtime.flush()  # the partitions' markers
    return runtime, outputs, registry


ADDRESSES = {"Email": "someone@example.com", "Phone": "+15550100"}


async def reachable(runtime: SegmentRuntime, partition: int, *users: str) -> None:
    """Give ``users`` an address on every channel the journey sends on."""
    updates = [TagUpdate(user_id=user, timestamp=NOW, tags=ADDRESSES) for user in users]
    await runtime.apply(partition, 0, "t", updates, at)


def commands(outputs: Outputs, worker: Worker) -> list[dict[str, Any]]:
    topic = worker.engine.topics.send_commands
    return [item for name, _, items in outputs.sent if name == topic for item in items]


def at(_: Any) -> datetime:
    return NOW


def own_time(item: Any) -> datetime:
    moment: datetime = item.timestamp
    return moment


async def test_audience_run_sends_once_even_when_swept_again(
    make_worker: Callable[..., Worker],
) -> None:
    worker = make_worker(segments=True, clock="simulated")
    runtime, outputs, _ = await ready(worker)
    tags = [
        TagUpdate(
            user_id=f"u{n}",
            timestamp=NOW,
            tags={"Country": "PT" if n % 3 else "FR", **ADDRESSES},
        )
        for n in range(30)
    ]
    await runtime.apply(0, 0, "t", tags, at)
    assert await runtime.run_schedules(0, NOW) == 1
    first = commands(outputs, worker)
    assert len(first) == 20
    assert {c["step"] for c in first} == {"email"}
    assert await runtime.run_schedules(0, NOW) == 0  # the run is marked as done
    # A crash before the marker was stored: the run is swept again, nobody re-enters.
    runtime.table.delete(0, RUNS_KEY, applied_offset=0)
    assert await runtime.run_schedules(0, NOW) == 1
    assert len(commands(outputs, worker)) == 20
    # The same tag record redelivered changes nothing.
    await runtime.apply(0, 0, "t", tags, at)
    assert len(commands(outputs, worker)) == 20


async def test_open_and_timers_move_users_once(make_worker: Callable[..., Worker]) -> None:
    worker = make_worker(segments=True, clock="simulated")
    runtime, outputs, _ = await ready(worker)
    await reachable(runtime, 1, "a", "b")
    signups = [Event(user_id=user, name="Signup", timestamp=NOW) for user in ("a", "b")]
    await runtime.apply(1, 7, "e", signups, at)
    await runtime.apply(1, 7, "e", signups, at)  # redelivered
    first = {c["user_id"]: c for c in commands(outputs, worker)}
    assert sorted(first) == ["a", "b"]
    opened = Feedback(
        command_id=first["a"]["command_id"],
        user_id="a",
        status=FeedbackStatus.OPENED,
        timestamp=NOW + timedelta(hours=1),
        channel="email",
    )
    await runtime.apply(1, 3, "f", [opened], own_time)
    assert runtime.status()["timers"] >= 1
    assert await runtime.fire_timers(1, NOW + timedelta(days=1)) >= 1
    assert await runtime.fire_timers(1, NOW + timedelta(days=2)) == 0
    sent = [(c["user_id"], c["step"]) for c in commands(outputs, worker)]
    assert sent == [("a", "email"), ("b", "email"), ("b", "sms")]
    assert len({c["command_id"] for c in commands(outputs, worker)}) == 3
    activity = [
        (item["user_id"], item["step"], item["activity"])
        for name, _, items in outputs.sent
        if name == worker.engine.topics.journey_activity
        for item in items
    ]
    assert ("a", "email", "opened") in activity
    assert ("b", "email", "not_opened") in activity
    assert ("a", "done", "exited") in activity


async def test_stop_drops_everyone_inside(make_worker: Callable[..., Worker]) -> None:
    worker = make_worker(segments=True, clock="simulated")
    runtime, outputs, registry = await ready(worker)
    await reachable(runtime, 0, "a")
    await runtime.apply(0, 1, "e", [Event(user_id="a", name="Signup", timestamp=NOW)], at)
    registry.fold(registry.prepare_action("welcome", JourneyAction.STOP, NOW))
    await runtime.rejourney(dict(registry.journeys), "welcome", NOW)
    await runtime.fire_timers(0, NOW + timedelta(days=3))
    assert [c["step"] for c in commands(outputs, worker)] == ["email"]
    dropped = [
        item["detail"]
        for name, _, items in outputs.sent
        if name == worker.engine.topics.journey_activity
        for item in items
        if item["activity"] == "dropped"
    ]
    assert dropped == ["journey stopped"]


async def test_feedback_on_a_journey_command_counts_for_its_journey_and_step(
    make_worker: Callable[..., Worker],
) -> None:
    worker = make_worker(segments=True, clock="simulated")
    runtime, outputs, registry = await ready(worker)
    opened_welcome = SegmentDefinition(
        id="opened-welcome",
        name="Opened the welcome email",
        condition=parse('M(opened, journey "welcome", step "email", last 5 days)'),
        version=1,
    )
    definitions = {**registry.segments, "opened-welcome": opened_welcome}
    await runtime.redefine(definitions, {"opened-welcome"}, NOW)
    await reachable(runtime, 0, "a")
    await runtime.apply(0, 1, "e", [Event(user_id="a", name="Signup", timestamp=NOW)], at)
    [command] = commands(outputs, worker)
    opened = Feedback(
        command_id=command["command_id"],
        user_id="a",
        status=FeedbackStatus.OPENED,
        timestamp=NOW + timedelta(minutes=5),
        channel="email",
    )
    await runtime.apply(0, 2, "f", [opened], own_time)
    changes = [
        (item["segment_id"], item["user_id"], item["change"])
        for name, _, items in outputs.sent
        if name == worker.engine.topics.memberships
        for item in items
    ]
    assert ("opened-welcome", "a", "entered") in changes
