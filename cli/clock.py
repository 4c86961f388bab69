"""``reach clock``: simulated time, tick by tick."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import click

from cli import common
from cli.common import api_key_option
from streams.settings import Settings


@click.group()
def clock() -> None:
    """Drive simulated time (REACH_CLOCK=simulated): ticks on the clock topic."""


_wait_option = click.option(
    "--wait",
    is_flag=True,
    help="Return once every partition has applied the tick and its outputs are written.",
)
_timeout_option = click.option(
    "--timeout",
    type=click.FloatRange(0.1, 3600),
    default=120.0,
    show_default=True,
    help="Seconds --wait waits.",
)


@clock.command(name="tick")
@click.argument("moment")
@_wait_option
@_timeout_option
@api_key_option
def clock_tick(moment: str, wait: bool, timeout: float, api_key: str | None) -> None:
    """Move simulated time to MOMENT (ISO 8601 or epoch ms); due timers fire."""
    from schemas.values import parse_timestamp

    try:
        instant = parse_timestamp(int(moment) if moment.isdigit() else moment)
    except ValueError:
        raise click.BadParameter(f"{moment!r}: use ISO 8601 or epoch milliseconds") from None
    _tick(instant, wait, timeout, api_key)


@clock.command(name="advance")
@click.argument("duration")
@_wait_option
@_timeout_option
@api_key_option
def clock_advance(duration: str, wait: bool, timeout: float, api_key: str | None) -> None:
    """Move simulated time forward by DURATION (e.g. 30m, 2h, 7d) from the engine's now."""
    from schemas.values import parse_timestamp

    status = common.call(api_key, "GET", "/v1/status")
    _tick(parse_timestamp(status["clock"]["now"]) + _duration(duration), wait, timeout, api_key)


def _duration(text: str) -> timedelta:
    units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
    number, unit = text[:-1], text[-1:]
    if unit not in units or not number.isdigit():
        raise click.BadParameter(f"{text!r}: use a number and one of s, m, h, d, w (e.g. 7d)")
    return timedelta(**{units[unit]: int(number)})


def _tick(moment: datetime, wait: bool, timeout: float, api_key: str | None) -> None:
    from client import system as client
    from streams.ticks import TickTimeout
    from streams.topics import Topics

    settings = common.settings()
    try:
        client.find_broker(settings)  # no system at all: say that first
        _require_simulated_clock(settings, api_key)
        count = asyncio.run(
            client.send_tick(settings, Topics.from_settings(settings).clock, moment, wait, timeout)
        )
    except (client.NotRunning, TickTimeout) as error:
        raise click.ClickException(str(error)) from None
    done = "applied" if wait else "ticked"
    click.echo(f"{done} {moment.isoformat()} on {count} partitions")


def _require_simulated_clock(settings: Settings, api_key: str | None) -> None:
    """A wall-clock system ignores ticks: refuse rather than report a tick that does
    nothing. The mode comes from the running system (its run file, else its status);
    with no system running from this data directory (a configured broker), from
    REACH_CLOCK here, which must agree with the workers'."""
    from streams import runfile

    info = runfile.read(settings.data_dir)
    mode: str
    if info is None:
        mode, source = settings.clock, "REACH_CLOCK here"
    elif info.clock:
        mode, source = info.clock, "the running system"
    else:
        mode = str(common.call(api_key, "GET", "/v1/status")["clock"]["mode"])
        source = "the running system"
    if mode != "simulated":
        raise click.ClickException(
            f"{source} runs on the wall clock, which ignores ticks; simulated time needs "
            "REACH_CLOCK=simulated when the system starts"
        )
