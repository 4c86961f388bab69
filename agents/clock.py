"""Following the clock topic: each role that keeps timers (segments and journeys,
delivery) reads every tick of simulated time with its own agent."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

import faust

from schemas.clock import TICK
from streams.checkpoint import unacked_events
from streams.engine import Engine

log = logging.getLogger(__name__)

OnTick = Callable[[int, datetime], Awaitable[None]]
"""Called with (partition, the clock's new now) for each valid tick."""


def follow_clock(app: faust.App, engine: Engine, name: str, on_tick: OnTick) -> None:
    """An agent ``name`` that advances the worker's clock to each tick and calls
    ``on_tick``; a record that is not a tick is logged and passed over."""
    topic = app.topic(engine.topics.clock, key_serializer="raw", value_serializer="raw")

    async def ticks(stream: faust.StreamT[bytes]) -> None:
        async for event in unacked_events(stream):
            try:
                tick = TICK.validate_json(event.value)
            except ValueError as error:
                log.error("clock record at %s is not a tick: %s", event.message.offset, error)
            else:
                now = engine.clock.advance(tick.now)
                await on_tick(event.message.partition, now)
            engine.checkpoint.hold(event)

    app.agent(topic, name=name)(ticks)
