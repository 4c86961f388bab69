"""The Faust app factory: builds the app and everything its worker runs from settings;
nothing happens at import. The one place the agents, the projections and the HTTP API
are put together."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import faust

from agents.clock import follow_clock
from agents.delivery import agent as delivery_agent
from agents.delivery.worker import DeliveryWorker
from agents.intake import agent as intake_agent
from agents.segments import service as segment_service
from agents.segments.agent import SegmentRuntime
from api.segments import Previewer
from api.server import HttpApi
from projections.agents import dead_letters, memberships, profiles
from projections.agents import journeys as journey_projections
from projections.inputs import InputProjection
from projections.store import Projections
from schemas.segments import Condition
from streams.checkpoint import CheckpointService
from streams.engine import Engine
from streams.settings import Settings
from worker.services import Looping, Running


@dataclass
class System:
    """One worker process's parts, typed: what the process runner and the tests reach."""

    app: faust.App
    engine: Engine
    projections: Projections
    intake: intake_agent.IntakeTargets
    api: HttpApi
    segments: SegmentRuntime | None = None
    delivery: DeliveryWorker | None = None


async def _no_timers(partition: int, now: datetime) -> None:
    return None


def create_app(settings: Settings, bootstrap: str) -> System:
    projections = Projections(settings)
    engine = Engine.from_settings(settings, bootstrap, projections.sink)
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
    intake = intake_agent.IntakeTargets(
        rows=InputProjection.from_settings(projections.sink, settings)
        if settings.projects
        else None
    )
    if settings.projects or settings.segments:
        intake_agent.register(app, engine, intake)
    app.service(Looping(engine.definitions))  # type: ignore[arg-type]
    checkpoints = CheckpointService(engine.checkpoint, settings.projection_flush_seconds)
    app.service(Looping(checkpoints))  # type: ignore[arg-type]
    if settings.projects:
        dead_letters.register(app, engine, projections.sink)
        memberships.register(app, engine, projections.sink)
        profiles.register(app, engine, projections.sink)
        journey_projections.register(app, engine, projections.sink)
        app.service(Running(projections))  # type: ignore[arg-type]
    segments = segment_service.build(app, engine) if settings.segments else None
    intake.segments = segments
    delivery = delivery_agent.build(app, engine) if settings.delivers else None
    if engine.clock.simulated and not (settings.segments or settings.delivers):
        # Nothing here keeps timers, but the HTTP API still tells time (a journey's
        # derived status): simulated time moves by the same ticks as elsewhere.
        follow_clock(app, engine, "projection-clock", _no_timers)

    def assigned() -> list[str]:
        return [f"{tp.topic}:{tp.partition}" for tp in app.consumer.assignment()]

    api = HttpApi(engine, projections, _previewer(engine, segments), assigned)
    app.web_server(Running(api))
    return System(app, engine, projections, intake, api, segments, delivery)


def _previewer(engine: Engine, runtime: SegmentRuntime | None) -> Previewer | None:
    if runtime is None:
        return None

    async def preview(condition: Condition, sample: int) -> tuple[int, int, list[str]]:
        return await runtime.preview(condition, sample, engine.clock.now())

    return preview
