"""Runs the whole system in this process: broker (if none configured), Faust worker,
projections and the HTTP API, until Ctrl-C; stops what it started, also on failure."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import faust

from streams import runfile
from streams.app import create_app
from streams.broker import BrokerUnavailable, EmbeddedBroker, check_reachable
from streams.http_api import check_binding
from streams.settings import Settings, bootstrap_servers
from streams.ticks import ENGINE_ROLE, applied_ticks, last_tick
from streams.topics import Topics, ensure_topics


class StartupError(RuntimeError):
    """The system cannot start; the message says why in one line."""


def run(settings: Settings) -> None:
    try:
        check_binding(settings.http_is_loopback, settings.api_keys)
    except ValueError as error:  # InsecureBinding, ApiKeyError
        raise StartupError(str(error)) from None
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    broker: EmbeddedBroker | None = None
    try:
        if settings.broker_url:
            bootstrap = bootstrap_servers(settings.broker_url)
            logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
            try:
                loop.run_until_complete(check_reachable(bootstrap))
            except BrokerUnavailable as error:
                raise StartupError(str(error)) from None
        else:
            broker = EmbeddedBroker(log_path=settings.data_dir / "broker.log").start()
            bootstrap = broker.bootstrap
        topics = Topics.from_settings(settings)
        loop.run_until_complete(
            ensure_topics(
                bootstrap,
                list(topics.all()),
                settings.partitions,
                settings.replication_factor,
                topics.compacted,
            )
        )
        app, engine = create_app(settings, bootstrap)
        if engine.clock.simulated:
            # Before anything is processed: stamps and status tell the time of the last
            # tick written, not the epoch.
            engine.read_last_tick = partial(last_tick, bootstrap, topics.clock)
            tick = loop.run_until_complete(engine.read_last_tick())
            applied = loop.run_until_complete(
                applied_ticks(bootstrap, topics.clock_applied, ENGINE_ROLE)
            )
            engine.clock.recover(tick, applied)

        async def announce() -> None:
            info = runfile.RunInfo(os.getpid(), bootstrap, engine.http_url)
            runfile.write(settings.data_dir, info)
            print(
                f"reachstream is up: HTTP API {engine.http_url}, broker {bootstrap}, "
                f"ClickHouse {settings.clickhouse} (Ctrl-C stops)",
                flush=True,
            )

        _Worker(
            app, announce, loop=loop, loglevel=settings.log_level, quiet=True
        ).execute_from_commandline()
    finally:
        runfile.remove(settings.data_dir)
        if broker is not None:
            broker.stop()


def tune_collector() -> None:
    """The garbage collector as a worker runs it once started. What exists now (modules,
    the app, recovered state) lives as long as the process: out of the collector's
    sight. And the young generation is collected less often: a worker allocates a few
    short-lived dicts per input, and with a large live heap each full collection cost
    as much as thousands of inputs."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


class _Worker(faust.Worker):
    """Faust's worker, telling the world once the app is ready."""

    def __init__(
        self, app: faust.App, announce: Callable[[], Awaitable[None]], **kwargs: Any
    ) -> None:
        self._announce = announce
        super().__init__(app, **kwargs)
        # Faust's progress spinner lowers the root logger to DEBUG so that every record
        # turns it: each debug line of the Kafka client was then built and handled,
        # a few percent of a busy worker. The announcement says when it is up.
        self.spinner = None

    async def on_startup_finished(self) -> None:
        await super().on_startup_finished()
        tune_collector()
        await self._announce()
