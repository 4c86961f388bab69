"""Runs the whole system in this process: broker (if none configured), Faust worker,
projections and the HTTP API, until Ctrl-C; stops what it started, also on failure."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import faust

from api.auth import check_binding
from streams import runfile
from streams.broker import (
    BrokerUnavailable,
    EmbeddedBroker,
    broker_port,
    check_reachable,
    record_port,
)
from streams.ports import PortUnavailable, check_free
from streams.settings import Settings, bootstrap_servers
from streams.ticks import ENGINE_ROLE, applied_ticks, last_tick
from streams.topics import Topics, ensure_topics
from worker.app import create_app


class StartupError(RuntimeError):
    """The system cannot start; the message says why in one line."""


def run(settings: Settings) -> None:
    try:
        check_binding(settings.http_is_loopback, settings.api_keys)
    except ValueError as error:  # InsecureBinding, ApiKeyError
        raise StartupError(str(error)) from None
    owner_only(settings.data_dir)
    # One system per data directory: the lock comes before anything opens a store
    # there, and only its holder ever touches the run file.
    try:
        held = runfile.hold(settings.data_dir)
    except runfile.AlreadyRunning as error:
        raise StartupError(str(error)) from None
    try:
        check_free(settings.http_host, settings.http_port, "REACH_HTTP_PORT")
    except PortUnavailable as error:
        held.release()
        raise StartupError(str(error)) from None
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
            broker = _start_embedded_broker(settings)
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
        system = create_app(settings, bootstrap)
        app, engine = system.app, system.engine
        volatile = (
            " (memory storage: lost at stop)" if broker and broker.storage == "memory" else ""
        )
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
            info = runfile.RunInfo(
                os.getpid(), bootstrap, system.api.url, settings.role, settings.clock
            )
            runfile.write(settings.data_dir, info)
            print(
                f"reachstream is up: HTTP API {system.api.url}, broker {bootstrap}{volatile}, "
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
        held.release()


def owner_only(data_dir: Path) -> None:
    """What this process creates from now on (data directory, state, ClickHouse files,
    run file, logs) is readable by its owner only: it holds users' personal data."""
    os.umask(0o077)
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)


def _start_embedded_broker(settings: Settings) -> EmbeddedBroker:
    """The embedded broker (and its object store when durable), on the port this data
    directory used last time; the system stops if either of them dies."""
    data_dir = settings.data_dir
    durable = settings.broker_storage == "durable"
    try:
        broker = EmbeddedBroker(
            log_path=data_dir / "broker.log",
            port=broker_port(data_dir, settings.broker_port),
            storage_dir=(data_dir / "broker").resolve() if durable else None,
            on_failure=_stop_self,
        ).start()
    except BrokerUnavailable as error:
        raise StartupError(str(error)) from None
    record_port(data_dir, broker.port)
    return broker


BROKER_LOST_EXIT_SECONDS = 15.0


def _stop_self(reason: str) -> None:
    """Called from the broker's watchdog thread: stop the worker as SIGTERM would. Without
    its broker the worker cannot commit anything and its consumers wait a minute for
    answers that never come: if it has not exited after a grace period, it exits hard,
    losing nothing the broker did not have (what was not committed is read again)."""
    logging.getLogger(__name__).error("%s: stopping", reason)
    print(f"reachstream: {reason}; stopping", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(BROKER_LOST_EXIT_SECONDS)
    os._exit(1)


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
