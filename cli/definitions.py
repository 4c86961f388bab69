"""``reach segments``, ``reach presets`` and ``reach journeys``: definitions through the
running system's HTTP API."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import orjson

from cli import common
from cli.common import api_key_option
from cli.output import emit, format_options, output_format


@click.group()
def segments() -> None:
    """Define, list and inspect segments (through the running system's HTTP API)."""


@segments.command(name="apply")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@api_key_option
def segments_apply(path: Path, api_key: str | None) -> None:
    """Create or change the segments in a JSON or YAML file (one or a list)."""
    from files.segments import DefinitionError, load

    try:
        definitions = load(path)
    except DefinitionError as error:
        raise click.ClickException(str(error)) from None
    body = [definition.model_dump(mode="json") for definition in definitions]
    for applied in common.call(api_key, "POST", "/v1/segments", body)["applied"]:
        click.echo(f"applied {applied['id']} (version {applied['version']})")


@segments.command(name="list")
@format_options
@api_key_option
def segments_list(as_json: bool, as_csv: bool, api_key: str | None) -> None:
    """The live segments."""
    columns = ("id", "version", "name", "expression")
    rows = [
        [segment[column] for column in columns]
        for segment in common.call(api_key, "GET", "/v1/segments")["segments"]
    ]
    emit(columns, rows, output_format(as_json, as_csv))


@segments.command(name="show")
@click.argument("segment_id")
@api_key_option
def segments_show(segment_id: str, api_key: str | None) -> None:
    """One segment's definition, as JSON, with its expression."""
    click.echo(
        orjson.dumps(
            common.call(api_key, "GET", f"/v1/segments/{segment_id}"), option=orjson.OPT_INDENT_2
        )
    )


@segments.command(name="delete")
@click.argument("segment_id")
@api_key_option
def segments_delete(segment_id: str, api_key: str | None) -> None:
    """Delete a segment: its members all exit."""
    answer = common.call(api_key, "DELETE", f"/v1/segments/{segment_id}")
    click.echo(f"deleted {answer['deleted']} (version {answer['version']})")


@segments.command(name="preview")
@click.argument("expression")
@click.option("--sample", default=10, show_default=True, help="How many members to show.")
@api_key_option
def segments_preview(expression: str, sample: int, api_key: str | None) -> None:
    """Count and sample the users matching EXPRESSION now, without saving anything."""
    answer = common.call(
        api_key, "POST", "/v1/segments/preview", {"expression": expression, "sample": sample}
    )
    click.echo(f"{answer['members']} of {answer['users']} users match")
    for user in answer["sample"]:
        click.echo(f"  {user}")


@click.group()
def presets() -> None:
    """Define, list, inspect and preview content presets (through the HTTP API)."""


@presets.command(name="apply")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@api_key_option
def presets_apply(path: Path, api_key: str | None) -> None:
    """Create or change the presets in a JSON or YAML file (one or a list)."""
    from files.presets import from_document

    _apply_file(path, api_key, "/v1/presets", from_document)


@presets.command(name="list")
@format_options
@api_key_option
def presets_list(as_json: bool, as_csv: bool, api_key: str | None) -> None:
    """The presets, their channel, version and languages (the default one first)."""
    rows = [
        [
            preset["id"],
            preset["channel"],
            preset["version"],
            preset["name"],
            [preset["default_language"] or "(base)", *preset["languages"]],
        ]
        for preset in common.call(api_key, "GET", "/v1/presets")["presets"]
    ]
    emit(("id", "channel", "version", "name", "languages"), rows, output_format(as_json, as_csv))


@presets.command(name="show")
@click.argument("preset_id")
@api_key_option
def presets_show(preset_id: str, api_key: str | None) -> None:
    """A preset's definition and the journeys that send it, as JSON."""
    answer = common.call(api_key, "GET", f"/v1/presets/{preset_id}")
    click.echo(orjson.dumps(answer, option=orjson.OPT_INDENT_2))


@presets.command(name="delete")
@click.argument("preset_id")
@api_key_option
def presets_delete(preset_id: str, api_key: str | None) -> None:
    """Delete a preset no journey may still send."""
    answer = common.call(api_key, "DELETE", f"/v1/presets/{preset_id}")
    click.echo(f"deleted {answer['deleted']} (version {answer['version']})")


@presets.command(name="render")
@click.argument("preset_id")
@click.option("--tags", default="{}", help='The user\'s tags, a JSON object: {"Language": "pt"}.')
@click.option("--properties", default="{}", help="Entry properties, a JSON object.")
@click.option("--user-id", default="", help="The user id ({{user_id}}).")
@api_key_option
def presets_render(
    preset_id: str, tags: str, properties: str, user_id: str, api_key: str | None
) -> None:
    """Preview PRESET_ID as a user with these tags and properties would get it."""
    body = {
        "tags": _json_object(tags, "--tags"),
        "properties": _json_object(properties, "--properties"),
        "user_id": user_id,
    }
    answer = common.call(api_key, "POST", f"/v1/presets/{preset_id}/render", body)
    click.echo(orjson.dumps(answer, option=orjson.OPT_INDENT_2))


def _json_object(text: str, option: str) -> dict[str, Any]:
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        raise click.BadParameter(f"not JSON: {error}", param_hint=option) from None
    if not isinstance(parsed, dict):
        raise click.BadParameter("must be a JSON object", param_hint=option)
    return parsed


@click.group()
def journeys() -> None:
    """Define, drive and inspect journeys (through the running system's HTTP API)."""


@journeys.command(name="apply")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@api_key_option
def journeys_apply(path: Path, api_key: str | None) -> None:
    """Create journeys or new versions of them from a JSON or YAML file (one or a list)."""
    from files.journeys import from_document

    _apply_file(path, api_key, "/v1/journeys", from_document)


def _apply_file(
    path: Path, api_key: str | None, route: str, check: Callable[[Any], object]
) -> None:
    """Check a definition file locally, then send it as written: the server reads it
    the same way, and a re-dump could change it."""
    from files.reading import DefinitionError, read

    try:
        document = read(path)
        check(document)  # the file's own errors, before anything is sent
    except DefinitionError as error:
        raise click.ClickException(str(error)) from None
    for applied in common.call(api_key, "POST", route, document)["applied"]:
        click.echo(f"applied {applied['id']} (version {applied['version']})")


def _journey_action(action: str, help_text: str) -> None:
    def command(journey_id: str, api_key: str | None) -> None:
        answer = common.call(api_key, "POST", f"/v1/journeys/{journey_id}/{action}")
        click.echo(f"{answer['id']}: {answer['status']} (launch {answer['launch']})")

    journeys.command(name=action, help=help_text)(
        click.argument("journey_id")(api_key_option(command))
    )


for _action, _action_help in (
    ("launch", "Launch a draft or stopped journey (each launch is a new run)."),
    ("pause", "Pause a launched journey."),
    ("resume", "Resume a paused journey."),
    ("stop", "Stop a launched or paused journey."),
):
    _journey_action(_action, _action_help)


@journeys.command(name="rename")
@click.argument("journey_id")
@click.argument("name")
@api_key_option
def journeys_rename(journey_id: str, name: str, api_key: str | None) -> None:
    """Give a journey a new name (in any state)."""
    answer = common.call(api_key, "POST", f"/v1/journeys/{journey_id}/rename", {"name": name})
    click.echo(f"{answer['id']}: renamed to {answer['name']}")


@journeys.command(name="list")
@format_options
@api_key_option
def journeys_list(as_json: bool, as_csv: bool, api_key: str | None) -> None:
    """The journeys, their status, latest version, launches and entries.

    A launched journey shows as finished once no entry can admit anyone any more (its
    audience schedules have had their last run) and nobody is inside."""
    columns = ("id", "status", "version", "launch", "name", "entries")
    rows = [
        [journey[column] for column in columns]
        for journey in common.call(api_key, "GET", "/v1/journeys")["journeys"]
    ]
    emit(columns, rows, output_format(as_json, as_csv), joiners={"entries": "; "})


@journeys.command(name="show")
@click.argument("journey_id")
@click.option("--version", type=click.IntRange(min=1), default=None, help="An older version.")
@api_key_option
def journeys_show(journey_id: str, version: int | None, api_key: str | None) -> None:
    """A journey's definition (the latest, or --version N) with its status, as JSON."""
    query = f"?version={version}" if version is not None else ""
    answer = common.call(api_key, "GET", f"/v1/journeys/{journey_id}{query}")
    click.echo(orjson.dumps(answer, option=orjson.OPT_INDENT_2))


@journeys.command(name="enter")
@click.argument("journey_id")
@click.argument("user_id")
@click.option("--properties", default="{}", help="A JSON object the messages can use.")
@api_key_option
def journeys_enter(journey_id: str, user_id: str, properties: str, api_key: str | None) -> None:
    """Put USER_ID into a launched journey that has an API entry."""
    try:
        parsed = orjson.loads(properties)
    except orjson.JSONDecodeError as error:
        raise click.BadParameter(f"not JSON: {error}", param_hint="--properties") from None
    if not isinstance(parsed, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--properties")
    body = {"users": [{"user_id": user_id, "properties": parsed}]}
    answer = common.call(api_key, "POST", f"/v1/journeys/{journey_id}/entries", body)
    click.echo(f"entered {user_id} into {journey_id} (entry {answer['entry_ids'][0]})")


@journeys.command(name="stats")
@click.argument("journey_id")
@format_options
@api_key_option
def journeys_stats(journey_id: str, as_json: bool, as_csv: bool, api_key: str | None) -> None:
    """A journey's status and statistics, from its activity in ClickHouse.

    --json prints the whole answer (totals and steps) as one JSON object; --csv one
    row per step."""
    from projections.journey_stats import STEP_COUNTS, format_stats

    stats = common.call(api_key, "GET", f"/v1/journeys/{journey_id}/stats")
    output = output_format(as_json, as_csv)
    if output == "json":
        click.echo(orjson.dumps(stats))
    elif output == "csv":
        columns = ("step", *STEP_COUNTS)
        rows = [
            [step["step"], *(step.get(name, 0) for name in STEP_COUNTS)] for step in stats["steps"]
        ]
        emit(columns, rows, "csv")
    else:
        click.echo(format_stats(stats))
