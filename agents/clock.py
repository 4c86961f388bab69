"""Following the clock topic: each role that keeps timers (segments and journeys,
delivery) reads every tick of simulated time with its own agent.

A tick with a barrier (``schemas.clock.Tick.after``) waits, in the clock agent only,
until this worker has handled the user inputs before it in the tick's partition; the
input agents never wait. Once applied and its outputs acknowledged, the tick is
reported on the clock-applied topic, for drivers that wait (``streams/ticks.py``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime

import faust
from faust.types import TP

from schemas.clock import TICK
from streams.engine import Engine
from streams.events import unacked_events
from streams.ticks import applied_record

log = logging.getLogger(__name__)

OnTick = Callable[[int, datetime], Awaitable[None]]
"""Called with (partition, the partition's new now) for each valid tick; returns once
what the tick caused is handed to the producer and acknowledged."""


class Abandoned(Exception):
    """The worker stopped its streams (a rebalance or a shutdown) while a tick waited."""


WAIT_LOG_SECONDS = 30.0
"""How long a tick waits for its barrier before saying so in the log (it goes on
waiting: the inputs before it are on their way)."""


def committed_offsets(app: faust.App, partition: int, topics: list[str]) -> dict[str, int]:
    """The offsets of ``topics`` in ``partition`` this worker's group has committed:
    records before them were handled before this process took the partition, and are
    not read again. Faust keeps them (``Consumer._committed_offset``, the next offset
    to read, set when partitions are assigned and at each commit)."""
    committed: Mapping[object, int | None] = getattr(app.consumer, "_committed_offset", {})
    found: dict[str, int] = {}
    for topic in topics:
        offset = committed.get(TP(topic, partition))
        if offset is not None:
            found[topic] = offset
    return found


async def wait_for_inputs(
    app: faust.App, engine: Engine, partition: int, ends: Mapping[str, int]
) -> None:
    """Until this worker has handled ``topic`` up to ``ends[topic]`` in ``partition``;
    ``Abandoned`` once the worker stops its streams: a rebalance (or a shutdown) waits
    for every record in hand to be acknowledged, and pauses the inputs this waits for."""
    if not ends:
        return
    topics = sorted(ends)
    loop = asyncio.get_running_loop()
    warn_at = loop.time() + WAIT_LOG_SECONDS
    while True:
        floor = committed_offsets(app, partition, topics)
        if engine.progress.reached(partition, ends, floor):
            return
        if not getattr(app.consumer, "flow_active", True):
            raise Abandoned(partition)
        await engine.progress.changed(topics, partition, timeout=0.2)
        if loop.time() > warn_at:
            warn_at = loop.time() + WAIT_LOG_SECONDS
            log.warning(
                "a tick in partition %d waits for inputs %s (handled: %s)",
                partition,
                dict(ends),
                {t: engine.progress.position(t, partition) for t in topics} | floor,
            )


def follow_clock(
    app: faust.App,
    engine: Engine,
    name: str,
    on_tick: OnTick,
    role: str | None = None,
    barrier: frozenset[str] = frozenset(),
) -> None:
    """An agent ``name`` that applies each tick to its partition and calls ``on_tick``;
    a record that is not a tick is logged and passed over. In simulated time, a tick
    first waits for its barrier's topics among ``barrier`` (the user inputs this worker
    handles), and once applied is reported on the clock-applied topic as ``role``."""
    topic = app.topic(engine.topics.clock, key_serializer="raw", value_serializer="raw")
    applied = app.topic(engine.topics.clock_applied, key_serializer="raw", value_serializer="raw")

    async def ticks(stream: faust.StreamT[bytes]) -> None:
        async for event in unacked_events(stream):
            partition = event.message.partition
            try:
                tick = TICK.validate_json(event.value)
            except ValueError as error:
                log.error("clock record at %s is not a tick: %s", event.message.offset, error)
            else:
                clock = engine.clock
                try:
                    if clock.simulated:
                        ends = {t: end for t, end in tick.after.items() if t in barrier}
                        await wait_for_inputs(app, engine, partition, ends)
                        now = clock.apply(partition, tick.now)
                    else:
                        now = clock.now()
                    await on_tick(partition, now)
                except Abandoned:
                    # Written again for the partition's next owner (maybe this worker),
                    # then acknowledged so the rebalance can go on. A tick applied twice
                    # is harmless: clocks never go back, timers fire once.
                    log.warning("tick %s for partition %d handed on", tick.now, partition)
                    await topic.send(value=event.value, partition=partition)
                    engine.checkpoint.hold(event)
                    continue
                if clock.simulated and role is not None:
                    key, value = applied_record(role, partition, now)
                    await applied.send(key=key, value=value, partition=0)
            engine.checkpoint.hold(event)

    app.agent(topic, name=name)(ticks)
