"""The clock over HTTP: ``POST /v1/clock/tick`` (scope admin) writes a tick of simulated
time, and with ``"wait": true`` answers once every partition has applied it; and the
instant lifecycle changes are stamped with."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

from aiohttp import web
from pydantic_core import from_json

from schemas.values import parse_timestamp
from streams.engine import Engine
from streams.ticks import TickDriver, TickTimeout

MAX_WAIT_SECONDS = 600.0

Json = Callable[..., web.Response]


class NotStarted(RuntimeError):
    """Simulated time has no tick yet: there is no instant to stamp."""


async def stamp_now(engine: Engine) -> datetime:
    """The instant a lifecycle change (launch, pause, stop, resume) is stamped with: on
    the wall clock, now; in simulated time, the newest tick written (read back from the
    clock topic, so a tick just written counts even before this worker applies it).
    ``NotStarted`` before any tick: a launch at the epoch would start every run since."""
    clock = engine.clock
    if clock.simulated:
        if engine.read_last_tick is not None:
            tick = await engine.read_last_tick()
            if tick is not None:
                clock.learn(tick)
        if not clock.started:
            raise NotStarted(
                "simulated time has not started: write a first tick "
                "(`reach clock tick`, or POST /v1/clock/tick)"
            )
    return clock.now()


class ClockRoutes:
    def __init__(self, engine: Engine, json: Json) -> None:
        self._engine = engine
        self._json = json
        self._driver: TickDriver | None = None
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        if self._driver is not None:
            await self._driver.stop()
            self._driver = None

    async def tick(self, request: web.Request) -> web.Response:
        """``{"now": "2026-11-08T10:00:00Z", "wait": true, "timeout": 120}``."""
        if not self._engine.clock.simulated:
            return self._json({"error": "the clock is the wall clock (REACH_CLOCK=wall)"}, 409)
        try:
            body = from_json(await request.read())
            now = parse_timestamp(body["now"])
            wait = body.get("wait", False)
            timeout = float(body.get("timeout", 120))
            if not isinstance(wait, bool) or not 0 < timeout <= MAX_WAIT_SECONDS:
                raise ValueError(body)
        except (ValueError, KeyError, TypeError, AttributeError):
            return self._json(
                {
                    "error": 'body must be {"now": TIMESTAMP, "wait": BOOL, "timeout": '
                    f"SECONDS (at most {MAX_WAIT_SECONDS:g})}}"
                },
                400,
            )
        async with self._lock:  # one driver: its reader of applied ticks is shared
            if self._driver is None:
                driver = TickDriver(self._engine.bootstrap, self._engine.topics)
                await driver.start()
                self._driver = driver
            try:
                ticked = await self._driver.tick(now, wait=wait, timeout=timeout)
            except TickTimeout as error:
                return self._json({"error": str(error)}, 504)
        return self._json(
            {"now": ticked.now.isoformat(), "partitions": ticked.partitions, "applied": wait}
        )
