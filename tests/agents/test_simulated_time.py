"""Simulated time in the worker: each input is evaluated at its own timestamp, ticks
alone move a partition's clock, a launch before the first tick starts no stale runs,
and the same inputs and ticks give the same outputs whatever order the partitions are
processed in."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from agents.segments.agent import SegmentRuntime
from schemas.clock import Tick
from schemas.definitions import Definitions, JourneyAction
from schemas.events import Event
from schemas.journeys import JourneyDefinition
from schemas.segment_language import parse
from schemas.segments import SegmentDefinition
from schemas.tags import TagUpdate
from tests.agents.conftest import Worker
from tests.agents.test_segment_agent import Outputs
from tests.unit.journey_sim import preset

T0 = datetime(2026, 12, 10, 8, tzinfo=UTC)
DAY = timedelta(days=1)

WAITING = {
    "id": "reply",
    "name": "Reply within a day",
    "entries": [{"kind": "trigger", "match": {"event": "Signup"}}],
    "start": "wait",
    "nodes": [
        {"id": "wait", "type": "wait_for_event",
         "branches": [{"name": "replied", "events": [{"event": "Reply"}]}],
         "timeout": {"amount": 1, "unit": "days"},
         "next": {"replied": "thanks", "timeout": "nudge"}},
        {"id": "thanks", "type": "message", "channel": "in_app", "preset": "hello",
         "next": {"next": "done"}},
        {"id": "nudge", "type": "message", "channel": "in_app", "preset": "hello",
         "next": {"next": "done"}},
        {"id": "done", "type": "exit"},
    ],
}  # fmt: skip

WEEKLY = {
    "id": "weekly",
    "name": "Fridays at 17:00",
    "entries": [{"kind": "audience", "segment": "everyone",
                 "schedule": {"kind": "recurring", "unit": "weeks", "weekdays": ["fri"],
                              "at": "17:00", "timezone": "Europe/Paris"}}],
    "settings": {"reentry": {"kind": "every_run"}},
    "start": "push",
    "nodes": [
        {"id": "push", "type": "message", "channel": "in_app", "preset": "hello",
         "next": {"next": "done"}},
        {"id": "done", "type": "exit"},
    ],
}  # fmt: skip


async def ready(
    worker: Worker, journey: dict[str, Any], launched_at: datetime
) -> tuple[SegmentRuntime, Outputs]:
    runtime: SegmentRuntime = worker.system.segments
    outputs = Outputs()
    runtime._producer = outputs  # type: ignore[assignment]
    await runtime.table.start()
    await runtime.table.recover(range(worker.engine.settings.partitions))
    registry = Definitions()
    everyone = SegmentDefinition(
        id="everyone", name="all", condition=parse('T("Country", exists)'), version=0
    )
    registry.fold(registry.prepare(everyone, T0))
    registry.fold(registry.prepare_preset(preset("hello", "in_app"), T0))
    registry.fold(registry.prepare_journey(JourneyDefinition.model_validate(journey), T0))
    registry.fold(registry.prepare_action(journey["id"], JourneyAction.LAUNCH, launched_at))
    await runtime.load(registry.segments, dict(registry.journeys), T0)
    await runtime.on_recovered(set(range(worker.engine.settings.partitions)))
    await runtime.flush()  # the partitions' markers
    return runtime, outputs


def sent(outputs: Outputs, worker: Worker, topic: str | None = None) -> list[dict[str, Any]]:
    name = topic or worker.engine.topics.send_commands
    return [item for topic_, _, items in outputs.sent if topic_ == name for item in items]


async def feed(
    worker: Worker, partition: int, offset: int, kind: str, items: Sequence[Any]
) -> None:
    """An input record, as the intake agent hands it to the segment runtime."""
    await worker.system.intake.to_segments(
        worker.engine.clock, partition, offset, kind, list(items)
    )


async def test_a_future_event_of_one_user_does_not_move_another_users_time(
    make_worker: Callable[..., Worker],
) -> None:
    worker = make_worker(segments=True, clock="simulated")
    _, outputs = await ready(worker, WAITING, T0)
    signup = [Event(user_id=u, name="Signup", timestamp=T0) for u in ("a", "b")]
    await feed(worker, 0, 0, "events", signup)
    # User a's event is stamped after b's timeout; b replies 1 s before it.
    await feed(worker, 0, 1, "events", [Event(user_id="a", name="Other", timestamp=T0 + 2 * DAY)])
    reply = T0 + DAY - timedelta(seconds=1)
    await feed(worker, 0, 2, "events", [Event(user_id="b", name="Reply", timestamp=reply)])
    steps = {(c["user_id"], c["step"]) for c in sent(outputs, worker)}
    assert ("b", "thanks") in steps
    assert ("b", "nudge") not in steps
    # And a's own time: its event at T0+2d is after its own timeout.
    assert ("a", "nudge") in steps


async def test_inputs_move_no_partition_clock(make_worker: Callable[..., Worker]) -> None:
    worker = make_worker(segments=True, clock="simulated")
    await ready(worker, WAITING, T0)
    await feed(worker, 1, 0, "events", [Event(user_id="a", name="X", timestamp=T0 + 9 * DAY)])
    clock = worker.engine.clock
    assert clock.at(0) < T0
    assert clock.at(1) < T0
    assert clock.now() < T0


async def test_an_input_is_never_evaluated_before_its_users_newest_event(
    make_worker: Callable[..., Worker],
) -> None:
    worker = make_worker(segments=True, clock="simulated")
    _, outputs = await ready(worker, WAITING, T0)
    await feed(worker, 0, 0, "events", [Event(user_id="a", name="Signup", timestamp=T0)])
    await feed(worker, 0, 1, "events", [Event(user_id="a", name="Other", timestamp=T0 + 2 * DAY)])
    # Stamped before the user's newest event: evaluated at that event, after the timeout.
    await feed(worker, 0, 2, "events", [Event(user_id="a", name="Reply", timestamp=T0)])
    assert [c["step"] for c in sent(outputs, worker)] == ["nudge"]


async def test_a_launch_before_the_first_tick_starts_only_the_latest_run(
    make_worker: Callable[..., Worker],
) -> None:
    # Launched while the simulated clock still said 1970 (before any tick), then the
    # first ticks come in 2026: one run, the latest due, and no stale ones after it.
    worker = make_worker(segments=True, clock="simulated")
    runtime, outputs = await ready(worker, WEEKLY, datetime(1970, 1, 1, tzinfo=UTC))
    tags = [TagUpdate(user_id=f"u{n}", timestamp=T0, tags={"Country": "PT"}) for n in range(3)]
    await runtime.apply(0, 0, "t", tags, lambda item: T0)
    friday = datetime(2026, 12, 11, 16, tzinfo=UTC)  # 17:00 in Paris
    for hours in range(0, 30, 6):
        await runtime.run_schedules(0, friday + timedelta(hours=hours))
    runs = sorted({c["run"] for c in sent(outputs, worker)})
    assert runs == ["1-20261211T1700"]


async def test_a_launch_after_the_clock_starts_nothing_before_it(
    make_worker: Callable[..., Worker],
) -> None:
    worker = make_worker(segments=True, clock="simulated")
    launch = datetime(2026, 12, 11, 18, tzinfo=UTC)  # after Friday's 17:00 in Paris
    runtime, outputs = await ready(worker, WEEKLY, launch)
    tags = [TagUpdate(user_id="u", timestamp=T0, tags={"Country": "PT"})]
    await runtime.apply(0, 0, "t", tags, lambda item: T0)
    assert await runtime.run_schedules(0, launch - timedelta(hours=1)) == 0
    assert await runtime.run_schedules(0, launch + 3 * DAY) == 0  # next Friday not yet
    assert await runtime.run_schedules(0, launch + 7 * DAY) == 1
    assert {c["run"] for c in sent(outputs, worker)} == {"1-20261218T1700"}


# --- determinism --------------------------------------------------------------------

Record = tuple[int, int, str, list[Any]]  # partition, offset, kind, items


def scenario() -> tuple[list[Record], list[datetime]]:
    """Two partitions of users: signups, replies just before and after their
    timeouts, events stamped far ahead, and ticks every six hours for two days."""
    records: list[Record] = []
    for partition in (0, 1):
        users = [f"p{partition}u{n}" for n in range(6)]
        records.append(
            (partition, 0, "events", [Event(user_id=u, name="Signup", timestamp=T0) for u in users])
        )
        replies = [
            Event(user_id=u, name="Reply", timestamp=T0 + DAY + timedelta(seconds=(-1) ** n))
            for n, u in enumerate(users[:4])
        ]
        records.append((partition, 1, "events", replies))
        ahead = [Event(user_id=users[5], name="Other", timestamp=T0 + 5 * DAY)]
        records.append((partition, 2, "events", ahead))
    ticks = [T0 + timedelta(hours=6 * n) for n in range(1, 9)]
    return records, ticks


Step = tuple[str, int, Any]  # ("input", partition, record) or ("tick", partition, now)


def one_after_another(first: int) -> list[Step]:
    """Each partition's inputs then its ticks, ``first`` partition first."""
    records, ticks = scenario()
    steps: list[Step] = []
    for partition in (first, 1 - first):
        steps += [("input", partition, r) for r in records if r[0] == partition]
        steps += [("tick", partition, t) for t in ticks]
    return steps


def interleaved() -> list[Step]:
    """Partition 1 ahead: its inputs and ticks alternate with partition 0's."""
    records, ticks = scenario()
    steps: list[Step] = []
    for partition in (1, 0):
        steps += [("input", partition, r) for r in records if r[0] == partition][:1]
    rest = [r for r in records if r not in [step[2] for step in steps]]
    for record in sorted(rest, key=lambda r: (r[1], -r[0])):
        steps.append(("input", record[0], record))
    for tick in ticks:
        steps += [("tick", 1, tick), ("tick", 0, tick)]
    return steps


async def play(worker: Worker, steps: Sequence[Step]) -> list[str]:
    """The steps in order; the outputs as sorted JSON lines, by topic."""
    runtime, outputs = await ready(worker, WAITING, T0)
    for kind, partition, what in steps:
        if kind == "input":
            await feed(worker, *what)
        else:
            now = worker.engine.clock.apply(partition, what)
            await runtime.run_schedules(partition, now)
            await runtime.fire_timers(partition, now)
    return sorted(
        f"{topic} {orjson.dumps(item, option=orjson.OPT_SORT_KEYS).decode()}"
        for topic, _, items in outputs.sent
        for item in items
    )


@pytest.mark.parametrize("order", ["reversed", "interleaved"])
async def test_the_same_inputs_and_ticks_give_the_same_outputs(
    make_worker: Callable[..., Worker], order: str
) -> None:
    first = await play(make_worker(segments=True, clock="simulated"), one_after_another(0))
    steps = one_after_another(1) if order == "reversed" else interleaved()
    second = await play(make_worker(segments=True, clock="simulated"), steps)
    assert first == second
    commands = [line for line in first if line.startswith("reach.send-commands ")]
    assert len(commands) == 12  # every user got one message: thanks or nudge
    assert sum('"step":"thanks"' in line for line in commands) == 4  # replied in time


def test_a_tick_without_barrier_is_still_a_tick() -> None:
    tick = Tick.model_validate_json(b'{"now": "2026-12-10T08:00:00Z"}')
    assert tick.after == {}
    with_barrier = Tick(now=T0, after={"reach.events": 12})
    assert Tick.model_validate_json(with_barrier.model_dump_json()) == with_barrier


# --- ticks as barriers --------------------------------------------------------------


def tick_record(now: datetime, after: dict[str, int]) -> bytes:
    return Tick(now=now, after=after).model_dump_json().encode()


def event_record(user: str, name: str, at: datetime) -> bytes:
    return orjson.dumps([{"user_id": user, "name": name, "timestamp": at}])


async def eventually(condition: Callable[[], bool]) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in 5 s")


async def test_a_tick_waits_for_the_inputs_written_before_it(
    make_worker: Callable[..., Worker], drive: Callable[..., Any]
) -> None:
    worker = make_worker(segments=True, clock="simulated")
    _, outputs = await ready(worker, WAITING, T0)
    topics = worker.engine.topics
    clock = worker.engine.clock
    timeout = T0 + DAY
    async with (
        drive(worker, "intake-events") as events,
        drive(worker, "segment-clock") as ticks,
    ):
        # Written after the signup and the reply (offsets 0 and 1), the tick arrives
        # first: it waits for them, so the reply 1 s before the timeout wins.
        await ticks.wrapper.put(tick_record(timeout, {topics.events: 2}), key=None, partition=0)
        await asyncio.sleep(0.1)
        assert clock.at(0) < T0  # not applied: the inputs before it are not handled
        await events.put(event_record("b", "Signup", T0), partition=0)
        await asyncio.sleep(0.1)
        assert clock.at(0) < T0
        reply = timeout - timedelta(seconds=1)
        await events.put(event_record("b", "Reply", reply), partition=0)
        await eventually(lambda: clock.at(0) == timeout)
        await eventually(lambda: any(e.message.topic == topics.clock for e in ticks.held))
    assert [c["step"] for c in sent(outputs, worker)] == ["thanks"]
    applied = [s for s in worker.producer.sent if s.topic == topics.clock_applied]
    assert [(s.key, orjson.loads(s.value)["now"]) for s in applied] == [
        (b"segments:0", "2026-12-11T08:00:00Z")
    ]


async def test_a_tick_does_not_wait_for_inputs_handled_before_this_process(
    make_worker: Callable[..., Worker], drive: Callable[..., Any]
) -> None:
    from faust.types import TP

    worker = make_worker(segments=True, clock="simulated")
    await ready(worker, WAITING, T0)
    topics = worker.engine.topics
    # The group committed offset 7 of events in partition 1 before this process started.
    worker.app.consumer._committed_offset[TP(topics.events, 1)] = 7
    async with drive(worker, "segment-clock") as ticks:
        await ticks.put(tick_record(T0, {topics.events: 7}), key=None, partition=1)
    assert worker.engine.clock.at(1) == T0


async def test_ticks_never_move_a_partition_clock_back(
    make_worker: Callable[..., Worker], drive: Callable[..., Any]
) -> None:
    worker = make_worker(segments=True, clock="simulated")
    await ready(worker, WAITING, T0)
    async with drive(worker, "segment-clock") as ticks:
        await ticks.put(tick_record(T0 + DAY, {}), key=None, partition=0)
        await ticks.put(tick_record(T0, {}), key=None, partition=0)
    clock = worker.engine.clock
    assert clock.at(0) == T0 + DAY
    assert clock.at(1) < T0  # the other partition has had no tick
    assert clock.status()["partitions"] == {"0": "2026-12-11T08:00:00+00:00"}


async def test_a_waiting_tick_is_handed_on_when_the_worker_stops_its_streams(
    make_worker: Callable[..., Worker], drive: Callable[..., Any]
) -> None:
    # A rebalance (or a shutdown) waits for every record in hand to be acknowledged and
    # pauses the inputs a tick waits for: the tick is written again, for the partition's
    # next owner, and acknowledged.
    worker = make_worker(segments=True, clock="simulated")
    await ready(worker, WAITING, T0)
    topics = worker.engine.topics
    raw = tick_record(T0, {topics.events: 3})
    async with drive(worker, "segment-clock") as ticks:
        await ticks.wrapper.put(raw, key=None, partition=1)
        await asyncio.sleep(0.3)
        assert not ticks.held
        worker.app.consumer.flow_active = False
        await eventually(lambda: bool(ticks.held))
    assert worker.engine.clock.at(1) < T0  # not applied here
    again = [s for s in worker.producer.sent if s.topic == topics.clock]
    assert [(s.value, s.partition) for s in again] == [(raw, 1)]
