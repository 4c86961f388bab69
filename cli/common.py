"""What the ``reach`` commands share: the settings, the API key option, the running
system's HTTP API."""

from __future__ import annotations

import asyncio
from typing import Any

import click
from pydantic import ValidationError

from client.system import HttpClient
from streams.settings import Settings


def settings() -> Settings:
    try:
        return Settings()
    except ValidationError as error:
        problems = "; ".join(
            f"REACH_{'_'.join(str(part) for part in item['loc']).upper()}: {item['msg']}"
            for item in error.errors(include_url=False)
        )
        raise click.ClickException(f"invalid configuration: {problems}") from None


api_key_option = click.option(
    "--api-key", envvar="REACH_API_KEY", default=None, help="Key with the needed scope."
)


def api(api_key: str | None) -> HttpClient:
    from client.system import HttpClient, running_api

    url = running_api(settings().data_dir)
    if url is None:
        raise click.ClickException("no system is running from this data dir (start `reach up`)")
    return HttpClient(url, api_key)


def call(api_key: str | None, method: str, path: str, body: Any = None) -> Any:
    import aiohttp

    system = api(api_key)
    try:
        status, answer = asyncio.run(system.call(method, path, body))
    except aiohttp.ClientError as error:
        raise click.ClickException(f"the system at {system.url} does not answer: {error}") from None
    if status >= 400:
        message = answer.get("error") if isinstance(answer, dict) else answer
        raise click.ClickException(str(message))
    return answer
