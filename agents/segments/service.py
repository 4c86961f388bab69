"""The segment service of a worker: starts the state table and the runtime, follows
definition changes, fires timers on the wall clock, and registers the Faust agent
that turns clock ticks into timer firings in simulated time."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import faust
from mode import Service

from agents.clock import follow_clock, wait_for_inputs
from agents.intake.agent import send_dead_letters
from agents.segments import outputs as outputs_module
from agents.segments.agent import JourneyTopics, SegmentRuntime
from engine.codecs import InputCodec
from engine.intake import Source, intake
from engine.journeys.holdout import Holdout
from schemas.commands import JourneyEntryRequest
from schemas.definitions import (
    JourneyApplied,
    JourneyStatusChanged,
    SegmentApplied,
    SegmentDeleted,
)
from streams.engine import Engine, FeedbackRelease
from streams.events import unacked_events
from streams.state import attach_to_faust
from streams.ticks import ENGINE_ROLE as TICK_ROLE

log = logging.getLogger(__name__)


def build(app: faust.App, engine: Engine) -> SegmentRuntime:
    settings = engine.settings
    table = engine.state_table("segment-state")
    runtime = SegmentRuntime(
        table,
        engine.bootstrap,
        engine.topics.memberships,
        timedelta(days=settings.segment_horizon_days),
        JourneyTopics(
            commands=engine.topics.send_commands,
            activity=engine.topics.journey_activity,
            tags=engine.topics.tags,
            devices=engine.topics.devices,
            dead_letters=engine.topics.dead_letters,
        ),
        timers=engine.timer_queue("timers"),
        holdout=Holdout(settings.global_holdout_percent, settings.global_holdout_salt),
    )
    runtime.now = engine.clock.now
    runtime.lease = engine.lease
    runtime.outputs.profiles = engine.topics.profiles
    runtime.outputs.record_limit = min(
        outputs_module.OUTPUT_RECORD_BYTES, settings.max_record_bytes
    )

    async def recovered(partitions: set[int]) -> None:
        await runtime.start()
        # Waits for the definitions and redoes interrupted work: the partitions'
        # streams (inputs, ticks, entries) resume only after this.
        await runtime.on_recovered(partitions)

    attach_to_faust(
        app, table, engine.topics.events, recovered, runtime.on_released, lease=engine.lease
    )
    engine.status_parts["segments"] = runtime.status
    # The cut: outputs acknowledged, then the state that counts them, then (in the
    # checkpoint) rows and acks.
    engine.checkpoint.before_ack.append(runtime.flush)
    _register_clock(app, engine, runtime)
    _register_entries(app, engine, runtime)
    app.service(SegmentService(engine, runtime))  # type: ignore[arg-type]
    return runtime


def _register_clock(app: faust.App, engine: Engine, runtime: SegmentRuntime) -> None:
    """Ticks fire the timers and start the runs due in simulated time (on the wall clock
    a task does). A tick waits for the user inputs written before it; in a worker that
    also delivers, the feedback that tick releases (a delivery or an open at or before
    it) is applied before any timer of the tick fires."""

    async def on_tick(partition: int, now: datetime) -> None:
        if engine.clock.simulated and engine.delivery is not None:
            await release_feedback(app, engine, engine.delivery, runtime, partition, now)
        await runtime.run_schedules(partition, now)
        await runtime.fire_timers(partition, now)
        await runtime.flush_partition(partition)

    barrier = frozenset(engine.topics.user_inputs)
    follow_clock(app, engine, "segment-clock", on_tick, role=TICK_ROLE, barrier=barrier)


async def release_feedback(
    app: faust.App,
    engine: Engine,
    delivery: FeedbackRelease,
    runtime: SegmentRuntime,
    partition: int,
    now: datetime,
) -> None:
    """The delivery worker of this process takes the send commands sent so far, then
    releases the feedback due by ``now``; once the broker has that feedback, this worker
    applies it (the tick waits, the inputs flow)."""
    commands = engine.topics.send_commands
    sent = await runtime.sent_offset(commands, partition)
    if sent is not None:
        await wait_for_inputs(app, engine, partition, {commands: sent + 1})
    await delivery.release(partition, now)
    offset = await delivery.feedback_offset(partition)
    if offset is not None:
        await wait_for_inputs(app, engine, partition, {engine.topics.feedback: offset + 1})


def _register_entries(app: faust.App, engine: Engine, runtime: SegmentRuntime) -> None:
    """API journey entries: records of the HTTP API, one JSON array per partition. What
    cannot be read (a tombstone, not JSON, an invalid item) is dead-lettered, as on the
    input topics; the valid items of a record are applied."""
    topic = app.topic(engine.topics.journey_entries, key_serializer="raw", value_serializer="raw")
    dead_letters = app.topic(
        engine.topics.dead_letters, key_serializer="raw", value_serializer="raw"
    )
    codec = InputCodec(JourneyEntryRequest, engine.settings.max_record_bytes)

    async def entries(stream: faust.StreamT[bytes]) -> None:
        async for event in unacked_events(stream):
            message = event.message
            source = Source(message.topic, message.partition, message.offset, message.key)
            result = intake(codec, event.value, source, datetime.now(UTC))
            if result.dead:
                log.error(
                    "journey entries at %s/%s: %d dead-lettered (%s)",
                    message.partition,
                    message.offset,
                    len(result.dead),
                    result.dead[0].detail,
                )
                await send_dead_letters(dead_letters, result.dead, message.partition)
            if result.valid:
                await runtime.apply_entries(message.partition, message.offset, result.valid)
            engine.progress.passed(message.topic, message.partition, message.offset)
            engine.checkpoint.hold(event)

    app.agent(topic, name="journey-entries")(entries)


class SegmentService(Service):
    def __init__(self, engine: Engine, runtime: SegmentRuntime, **kwargs: Any) -> None:
        self.engine = engine
        self.runtime = runtime
        super().__init__(**kwargs)

    @Service.task
    async def _follow_definitions(self) -> None:
        # The registry is the source of truth: each change re-reads it whole, and the
        # first pass (once the topic is read) catches every partition up with changes
        # made while this worker was down (by the versions each partition recorded);
        # only then are the streams let in.
        definitions = self.engine.definitions
        await definitions.ready.wait()
        definitions.listeners.append(self._on_definition)
        definitions.journey_listeners.append(self._on_journey)
        await self.runtime.load(
            definitions.registry.segments,
            registry_journeys(definitions),
            self.engine.clock.now(),
        )

    async def _on_definition(self, event: SegmentApplied | SegmentDeleted) -> None:
        changed = event.definition.id if isinstance(event, SegmentApplied) else event.segment_id
        await self.runtime.redefine(
            self.engine.definitions.registry.segments, {changed}, self.engine.clock.now()
        )

    async def _on_journey(self, event: JourneyApplied | JourneyStatusChanged) -> None:
        changed = event.journey_id if isinstance(event, JourneyStatusChanged) else None
        registry = registry_journeys(self.engine.definitions)
        await self.runtime.rejourney(registry, changed, self.engine.clock.now())

    @Service.task
    async def _wall_clock_timers(self) -> None:
        if self.engine.clock.simulated:
            return  # timers fire on ticks
        while not self.should_stop:
            await self.sleep(0.25)
            now = self.engine.clock.now()
            for partition in sorted(self.runtime.partitions):
                await self.runtime.run_schedules(partition, now)
                await self.runtime.fire_timers(partition, now)

    async def on_stop(self) -> None:
        self.engine.lease.close()
        await self.runtime.stop()
        await self.runtime.table.stop()
        self.runtime.timers.close()


def registry_journeys(definitions: Any) -> dict[str, Any]:
    """A copy: the runtime indexes it while the registry keeps folding."""
    return dict(definitions.registry.journeys)
