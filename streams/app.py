"""The Faust app factory: builds the app from settings; nothing happens at import."""

from __future__ import annotations

from datetime import datetime

import faust

from agents.clock import follow_clock
from agents.delivery import worker as delivery_worker
from agents.intake import agent as intake_agent
from agents.segments import service as segment_service
from api.server import HttpApi
from projections.agents import dead_letters, memberships
from projections.agents import journeys as journey_projections
from projections.service import ProjectionService
from streams.checkpoint import CheckpointService
from streams.engine import Engine
from streams.settings import Settings


async def _no_timers(partition: int, now: datetime) -> None:
    return None


def create_app(settings: Settings, bootstrap: str) -> tuple[faust.App, Engine]:
    engine = Engine.from_settings(settings, bootstrap)
    app = faust.App(
        settings.group_id,
        broker=[f"kafka://{host}" for host in bootstrap.split(",")],
        broker_consumer=[f"reach://{host}" for host in bootstrap.split(",")],
        store="rocksdb://" if settings.table_store == "rocksdb" else "memory://",
        datadir=str(settings.data_dir / "faust"),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        # Joining a group waits about half the session timeout (measured on the embedded
        # broker), so keep it short.
        broker_session_timeout=settings.broker_session_timeout,
        broker_heartbeat_interval=settings.broker_session_timeout / 4,
        consumer_auto_offset_reset="earliest",
        producer_max_request_size=settings.max_record_bytes + 65536,
        consumer_max_fetch_size=max(4 * settings.max_record_bytes, 4 * 1024 * 1024),
        autodiscover=False,
    )
    if settings.projects or settings.segments:
        intake_agent.register(app, engine)
    app.service(engine.definitions)  # type: ignore[arg-type]
    checkpoints = CheckpointService(engine.checkpoint, settings.projection_flush_seconds)
    app.service(checkpoints)  # type: ignore[arg-type]
    if settings.projects:
        dead_letters.register(app, engine)
        memberships.register(app, engine)
        journey_projections.register(app, engine)
        app.service(ProjectionService(engine))  # type: ignore[arg-type]
    if settings.segments:
        segment_service.build(app, engine)
    if settings.delivers:
        delivery_worker.build(app, engine)
    if engine.clock.simulated and not (settings.segments or settings.delivers):
        # Nothing here keeps timers, but the HTTP API still tells time (a journey's
        # derived status): simulated time moves by the same ticks as elsewhere.
        follow_clock(app, engine, "projection-clock", _no_timers)
    app.web_server(HttpApi(engine, app))
    return app, engine
