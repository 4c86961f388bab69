"""Readiness: no partition is served before the definitions are loaded and its state
recovered, and work a crash or a rebalance interrupted is redone by whoever serves the
partition next."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import orjson
import pytest

from agents.segments import sweeps as sweeps_module
from agents.segments.agent import JOURNEYS_KEY, RUNS_KEY, SEGMENTS_KEY, SegmentRuntime
from engine import codec
from schemas.definitions import JourneyAction
from schemas.events import Event
from schemas.segment_language import parse
from schemas.segments import SegmentDefinition
from schemas.tags import TagUpdate
from streams.state import CoalescingTable, MemoryChangelog, MemoryStore
from tests.agents.conftest import Worker
from tests.agents.test_journey_agent import ADDRESSES, NOW, at, commands, reachable, ready
from tests.agents.test_segment_agent import Outputs

PARTITIONS = {0, 1, 2, 3}  # the default settings' count


def pt_tags(user: str, country: str) -> TagUpdate:
    """A user of ``country`` with an address on every channel the journey sends on."""
    return TagUpdate(user_id=user, timestamp=NOW, tags={"Country": country, **ADDRESSES})


def activity(outputs: Outputs, worker: Worker) -> list[tuple[str, str, str]]:
    return [
        (item["user_id"], item["step"], item["activity"] + ":" + (item.get("detail") or ""))
        for name, _, items in outputs.sent
        if name == worker.engine.topics.journey_activity
        for item in items
    ]


async def crash_and_restart(
    make_worker: Callable[..., Worker], worker: Worker
) -> tuple[Worker, SegmentRuntime, Outputs]:
    """Commit the checkpoint, then start a new worker on the same changelog: its
    partitions recover before its definitions are read."""
    await asyncio.wait_for(worker.engine.checkpoint.commit(), 5)
    changelog = worker.system.segments.table.changelog
    again = make_worker(segments=True, clock="simulated")
    runtime: SegmentRuntime = again.system.segments
    runtime.table = CoalescingTable(changelog, MemoryStore())
    again.engine.checkpoint.before_ack[:] = [runtime.flush]
    outputs = Outputs()
    runtime._producer = outputs  # type: ignore[assignment]
    await runtime.table.start()
    await runtime.table.recover(range(again.engine.settings.partitions))
    return again, runtime, outputs


async def turns(count: int = 20) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


async def test_an_input_waits_for_the_definitions_instead_of_ending_visits(
    make_worker: Callable[..., Worker],
) -> None:
    worker = make_worker(segments=True, clock="simulated")
    runtime, outputs, registry = await ready(worker)
    await reachable(runtime, 0, "a")
    await runtime.apply(0, 1, "e", [Event(user_id="a", name="Signup", timestamp=NOW)], at)
    assert [c["step"] for c in commands(outputs, worker)] == ["email"]

    again, runtime, outputs = await crash_and_restart(make_worker, worker)
    recovering = asyncio.create_task(runtime.on_recovered(PARTITIONS))
    later = Event(user_id="a", name="Browse", timestamp=NOW + timedelta(hours=1))
    applying = asyncio.create_task(runtime.apply(0, 2, "e", [later], at))
    await turns()
    assert not applying.done()  # the catalog is not loaded: the input waits
    await runtime.load(registry.segments, dict(registry.journeys), NOW)
    await asyncio.wait_for(asyncio.gather(recovering, applying), 5)
    assert activity(outputs, again) == []  # still inside, not "journey stopped"
    entry = runtime.table.get(0, "a")
    assert entry is not None
    journeys = codec.decode(entry.value).journeys
    assert journeys is not None
    assert journeys.state is not None
    assert "welcome" in journeys.state.visits
    # Its split times out as the journey says.
    await runtime.fire_timers(0, NOW + timedelta(days=2))
    assert [c["step"] for c in commands(outputs, again)] == ["sms"]


async def test_ticks_wait_for_the_definitions_and_resume_an_interrupted_run(
    make_worker: Callable[..., Worker],
) -> None:
    worker = make_worker(segments=True, clock="simulated")
    runtime, outputs, registry = await ready(worker)
    tags = [pt_tags(f"u{n}", "PT") for n in range(20)]
    await runtime.apply(0, 0, "t", tags, at)
    # The launch was cut short: the run's marker never made it into the state.
    again, runtime, outputs = await crash_and_restart(make_worker, worker)
    recovering = asyncio.create_task(runtime.on_recovered(PARTITIONS))
    tick = asyncio.create_task(runtime.run_schedules(0, NOW))  # a replayed tick
    await turns()
    assert not tick.done()
    await runtime.load(registry.segments, dict(registry.journeys), NOW)
    await asyncio.wait_for(recovering, 5)
    assert await asyncio.wait_for(tick, 5) == 1
    assert len(commands(outputs, again)) == 20
    assert runtime.table.get(0, RUNS_KEY) is not None


async def test_a_definition_change_cut_short_is_redone_by_the_next_owner(
    make_worker: Callable[..., Worker],
) -> None:
    worker = make_worker(segments=True, clock="simulated")
    runtime, outputs, registry = await ready(worker)
    tags = [pt_tags(f"u{n}", "ES") for n in range(5)]
    await runtime.apply(2, 0, "t", tags, at)
    await asyncio.wait_for(worker.engine.checkpoint.commit(), 5)
    # The definition changes; this worker loses partition 2 before its re-evaluation
    # was flushed (the new state and its outputs are dropped with the partition).
    spain = SegmentDefinition(
        id="portugal", name="PT", condition=parse('T("Country", eq, "ES")'), version=1
    )
    registry.fold(registry.prepare(spain, NOW))
    await runtime.table.release({2})
    runtime.on_released({2})
    await runtime.redefine(registry.segments, {"portugal"}, NOW)

    again, runtime, outputs = await crash_and_restart(make_worker, worker)
    await runtime.load(registry.segments, dict(registry.journeys), NOW)
    await runtime.on_recovered(PARTITIONS)
    entered = [
        item["user_id"]
        for name, partition, items in outputs.sent
        if name == again.engine.topics.memberships and partition == 2
        for item in items
        if item["change"] == "entered"
    ]
    assert sorted(entered) == [f"u{n}" for n in range(5)]
    marker = runtime.table.get(2, SEGMENTS_KEY)
    assert marker is not None
    assert marker.value == {"portugal": 2}


async def test_a_stop_sweep_cut_short_is_redone_by_the_next_owner(
    make_worker: Callable[..., Worker],
) -> None:
    worker = make_worker(segments=True, clock="simulated")
    runtime, outputs, registry = await ready(worker)
    await reachable(runtime, 3, "a", "b")
    signups = [Event(user_id=user, name="Signup", timestamp=NOW) for user in ("a", "b")]
    await runtime.apply(3, 1, "e", signups, at)
    await asyncio.wait_for(worker.engine.checkpoint.commit(), 5)
    registry.fold(registry.prepare_action("welcome", JourneyAction.STOP, NOW))
    await runtime.table.release({3})  # gone before the stop was swept there
    runtime.on_released({3})
    await runtime.rejourney(dict(registry.journeys), "welcome", NOW)

    again, runtime, outputs = await crash_and_restart(make_worker, worker)
    await runtime.load(registry.segments, dict(registry.journeys), NOW)
    await runtime.on_recovered(PARTITIONS)
    assert sorted(activity(outputs, again)) == [
        ("a", "email", "dropped:journey stopped"),
        ("b", "email", "dropped:journey stopped"),
    ]
    marker = runtime.table.get(3, JOURNEYS_KEY)
    assert marker is not None
    assert marker.value["welcome"][1] == "stopped"


async def test_a_released_partition_produces_nothing(
    make_worker: Callable[..., Worker],
) -> None:
    worker = make_worker(segments=True, clock="simulated")
    runtime, outputs, _ = await ready(worker)
    tags = [pt_tags(f"u{n}", "PT") for n in range(3)]
    await runtime.apply(1, 0, "t", tags, at)
    sent = len(outputs.sent)
    runtime.on_released({1})  # the table still has it for an instant
    await runtime.fire_timers(1, NOW + timedelta(days=30))
    await runtime.run_schedules(1, NOW)
    assert len(outputs.sent) == sent


class StallingOutputs(Outputs):
    """Sends go through until ``stall_at`` (a count of sends); that one waits for
    ``release``."""

    def __init__(self, stall_at: set[int]) -> None:
        super().__init__()
        self.stall_at = stall_at
        self.calls = 0
        self.stalled = asyncio.Event()
        self.release = asyncio.Event()

    async def send(self, topic: str, value: bytes, partition: int | None = None) -> Any:
        self.calls += 1
        if self.calls in self.stall_at:
            self.stalled.set()
            await self.release.wait()
            self.release.clear()
            self.stalled.clear()
        return await super().send(topic, value, partition)


async def test_a_launch_cut_short_mid_sweep_resumes_and_nobody_enters_twice(
    make_worker: Callable[..., Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sweeps_module, "TIMERS_PER_ROUND", 5)
    worker = make_worker(segments=True, clock="simulated")
    runtime, _, registry = await ready(worker)
    users = [f"u{n:02d}" for n in range(12)]
    tags = [pt_tags(user, "PT") for user in users]
    await runtime.apply(0, 0, "t", tags, at)
    await asyncio.wait_for(worker.engine.checkpoint.commit(), 5)
    # Each round of 5 users sends its commands, then its activity. The first round's
    # activity stalls while a checkpoint starts; the second round's commands stall
    # after that checkpoint made the first round durable; the worker dies there.
    outputs = StallingOutputs({2, 3})
    runtime._producer = outputs  # type: ignore[assignment]
    launch = asyncio.create_task(runtime.run_schedules(0, NOW))
    await asyncio.wait_for(outputs.stalled.wait(), 5)
    commit = asyncio.create_task(worker.engine.checkpoint.commit())
    await turns()
    outputs.release.set()
    await asyncio.wait_for(commit, 5)
    await asyncio.wait_for(outputs.stalled.wait(), 5)
    first = {c["user_id"]: c["command_id"] for c in commands(outputs, worker)}
    assert len(first) == 5
    again, runtime, outputs_again = await crash_and_restart_without_commit(make_worker, worker)
    launch.cancel()
    await runtime.load(registry.segments, dict(registry.journeys), NOW)
    await runtime.on_recovered(PARTITIONS)
    assert await runtime.run_schedules(0, NOW) == 1  # a replayed tick: the run resumes
    second = {c["user_id"]: c["command_id"] for c in commands(outputs_again, again)}
    assert sorted(second) == sorted(set(users) - set(first))  # nobody entered twice
    assert await runtime.run_schedules(0, NOW) == 0


async def crash_and_restart_without_commit(
    make_worker: Callable[..., Worker], worker: Worker
) -> tuple[Worker, SegmentRuntime, Outputs]:
    changelog = worker.system.segments.table.changelog
    durable = MemoryChangelog(changelog.partitions, changelog.topic)
    durable.logs = [list(log) for log in changelog.logs]
    again = make_worker(segments=True, clock="simulated")
    runtime: SegmentRuntime = again.system.segments
    runtime.table = CoalescingTable(durable, MemoryStore())
    again.engine.checkpoint.before_ack[:] = [runtime.flush]
    outputs = Outputs()
    runtime._producer = outputs  # type: ignore[assignment]
    await runtime.table.start()
    await runtime.table.recover(range(again.engine.settings.partitions))
    return again, runtime, outputs


async def test_the_intake_agent_holds_a_record_until_the_definitions_are_loaded(
    make_worker: Callable[..., Worker], drive: Callable[..., Any]
) -> None:
    worker = make_worker(segments=True, clock="simulated")
    runtime, outputs, registry = await ready(worker)
    await reachable(runtime, 0, "a")
    await runtime.apply(0, 1, "e", [Event(user_id="a", name="Signup", timestamp=NOW)], at)
    again, runtime, outputs = await crash_and_restart(make_worker, worker)
    await runtime.on_recovered(PARTITIONS)
    browse = {"user_id": "a", "name": "Browse", "timestamp": "2026-12-10T09:00:00Z"}
    async with drive(again, "intake-events") as driver:
        putting = asyncio.create_task(driver.put(orjson.dumps([browse]), key=b"a", partition=0))
        await asyncio.sleep(0.2)
        assert driver.held == []  # read, not processed, not acknowledged
        await runtime.load(registry.segments, dict(registry.journeys), NOW)
        await asyncio.wait_for(putting, 5)
    assert len(driver.held) == 1
    assert activity(outputs, again) == []
    entry = runtime.table.get(0, "a")
    assert entry is not None
    journeys = codec.decode(entry.value).journeys
    assert journeys is not None
    assert journeys.state is not None
    assert "welcome" in journeys.state.visits
