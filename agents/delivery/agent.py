"""The delivery worker's Faust wiring: its ledger table, the send-commands agent, the
clock that releases feedback in simulated time, and the service that releases it on
the wall clock (the worker itself is ``agents/delivery/worker.py``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import faust
from mode import Service

from agents.clock import follow_clock
from agents.delivery.worker import DeliveryWorker
from agents.intake.agent import send_dead_letters
from delivery import adapters as channel_adapters
from engine.intake import Source
from streams.engine import Engine
from streams.events import unacked_events
from streams.state import attach_to_faust


def build(app: faust.App, engine: Engine) -> DeliveryWorker:
    settings = engine.settings
    table = engine.state_table("delivery-ledger")
    worker = DeliveryWorker(
        table,
        channel_adapters.build(settings),
        settings,
        engine.clock,
        lambda: engine.definitions.registry.presets,
        engine.bootstrap,
        engine.topics.feedback,
        timers=engine.timer_queue("delivery-timers"),
        devices_topic=engine.topics.devices,
    )
    attach_to_faust(
        app, table, engine.topics.send_commands, worker.on_recovered, worker.on_released
    )
    engine.checkpoint.before_ack.append(worker.flush)
    engine.status_parts["delivery"] = worker.status
    engine.status_parts["channels"] = lambda: channel_adapters.served(worker.adapters)
    engine.delivery = worker
    _register_commands(app, engine, worker)
    _register_clock(app, engine, worker)
    app.service(DeliveryService(engine, worker))  # type: ignore[arg-type]
    return worker


def _register_commands(app: faust.App, engine: Engine, worker: DeliveryWorker) -> None:
    topic = app.topic(engine.topics.send_commands, key_serializer="raw", value_serializer="raw")
    dead_letters = app.topic(
        engine.topics.dead_letters, key_serializer="raw", value_serializer="raw"
    )

    async def commands(stream: faust.StreamT[bytes]) -> None:
        async for event in unacked_events(stream):
            message = event.message
            source = Source(message.topic, message.partition, message.offset, message.key)
            decoded = worker.decode(event.value, source)
            await send_dead_letters(dead_letters, decoded.dead, message.partition)
            if decoded.valid:
                # Presets come from the registry: render only once it is read whole.
                await engine.definitions.ready.wait()
                await worker.deliver(message.partition, message.offset, decoded.valid)
            # For the clock of this worker: the ledger has these commands.
            engine.progress.passed(message.topic, message.partition, message.offset)
            # Held (acknowledged at the next checkpoint) once every command is settled.
            engine.checkpoint.hold(event)

    app.agent(topic, name="delivery-commands")(commands)


def _register_clock(app: faust.App, engine: Engine, worker: DeliveryWorker) -> None:
    """Ticks release what is due in simulated time (on the wall clock a task does)."""

    if engine.settings.segments:
        # The segment clock of this worker releases feedback first, then fires timers.
        return

    async def on_tick(partition: int, now: datetime) -> None:
        if engine.clock.simulated:
            await worker.release(partition, now)
            await worker.flush_outputs()

    follow_clock(app, engine, "delivery-clock", on_tick, role="delivery")


class DeliveryService(Service):
    def __init__(self, engine: Engine, worker: DeliveryWorker, **kwargs: Any) -> None:
        self.engine = engine
        self.worker = worker
        super().__init__(**kwargs)

    @Service.task
    async def _wall_clock(self) -> None:
        if self.engine.clock.simulated:
            return  # ticks release
        while not self.should_stop:
            await self.sleep(0.25)
            for partition in sorted(self.worker.table.partitions):
                await self.worker.release(partition, self.engine.clock.at(partition))

    async def on_stop(self) -> None:
        await self.worker.stop()
        await self.worker.table.stop()
        self.worker.timers.close()
