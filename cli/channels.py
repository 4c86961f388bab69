"""``reach channels check``: each channel provider's credentials, checked without
sending (``--live``: FCM's dry run too). Secrets are never printed."""

from __future__ import annotations

import asyncio

import click

from cli.common import settings as _settings


@click.group()
def channels() -> None:
    """The delivery channels' providers."""


@channels.command(name="check")
@click.option("--live", is_flag=True, help="Also ask FCM for a token and a validate_only send.")
def channels_check(live: bool) -> None:
    """Check the configured providers' credentials (keys load, ids and fields present)."""
    from delivery.messaging_check import check_messaging
    from delivery.push_check import check_fcm_live, check_shapes

    settings = _settings()
    checks = check_shapes(settings)
    if live and settings.fcm_configured:
        checks.append(asyncio.run(check_fcm_live(settings)))
    checks += check_messaging(settings)
    for check in checks:
        mark = {True: "ok", False: "FAILED", None: "-"}[check.ok]
        click.echo(f"{check.provider:10} {mark:7} {check.detail}")
    if not any(check.ok is not None for check in checks):
        click.echo("no provider configured: push, web push and every other channel but")
        click.echo("email (SMTP) go to the simulator")
    if any(check.ok is False for check in checks):
        raise SystemExit(1)
