"""``reach explain USER``: the user's timeline and, with ``--journey``, why they did or
did not get a step's message (``GET /v1/users/{id}/explain``)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

import click
import orjson
from rich.markup import escape

from cli import common
from cli.common import api_key_option
from cli.output import emit, format_options, output_format


def explain_path(
    user_id: str, journey: str | None, step: str | None, start: str | None, end: str | None
) -> str:
    options = {"journey": journey, "step": step, "from": start, "to": end}
    query = urlencode({key: value for key, value in options.items() if value is not None})
    path = f"/v1/users/{quote(user_id, safe='')}/explain"
    return f"{path}?{query}" if query else path


@click.command()
@click.argument("user_id")
@click.option("--journey", default=None, help="Only this journey's rows, and why (not).")
@click.option("--step", default=None, help="With --journey: the step whose message to explain.")
@click.option("--from", "start", default=None, help="From this instant (ISO 8601).")
@click.option("--to", "end", default=None, help="Up to this instant (ISO 8601, excluded).")
@format_options
@api_key_option
def explain(
    user_id: str,
    journey: str | None,
    step: str | None,
    start: str | None,
    end: str | None,
    as_json: bool,
    as_csv: bool,
    api_key: str | None,
) -> None:
    """What happened to USER_ID, by event time: inputs, segment changes with the
    condition values that decided them, journey steps and branches with what made
    them, sends with their command ids and feedback. With --journey: why the user did
    or did not get the step's message (default: its first message), citing the rows.

    \b
      reach explain u42
      reach explain u42 --journey reengage-once --step second-email
    """
    if step is not None and journey is None:
        raise click.UsageError("--step needs --journey")
    answer = common.call(api_key, "GET", explain_path(user_id, journey, step, start, end))
    show(answer, output_format(as_json, as_csv))


def show(answer: dict[str, Any], output: str) -> None:
    if output == "json":
        click.echo(orjson.dumps(answer))
        return
    # Rows hold the users' own text (tags, attributes): never read as rich's markup.
    text = escape if output == "table" else str
    rows = [
        (moment["at"], moment["kind"], text(moment["what"]), text(moment["why"]), moment["id"])
        for moment in answer["timeline"]
    ]
    emit(("at", "kind", "what", "why", "id"), rows, "csv" if output == "csv" else "table")
    why = answer.get("why")
    if why is not None and output != "csv":
        click.echo(f"\n{answer['journey_id']} / {why['step']}: {why['answer']}")
        click.echo(f"  {why['text']}")
        for cite in why["cites"]:
            click.echo(f"  - {cite}")
