"""``reach backtest``: what a journey would have done over a past period, replayed over
the archive (the inputs in ClickHouse) through the engine's core in simulated time, in
state of its own; nothing is sent and nothing is written (see docs/backtest.md)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import orjson

from cli.common import api_key_option
from cli.common import settings as _settings
from engine.backtest import Backtest, Report
from schemas.journeys import JourneyDefinition
from schemas.segments import SegmentDefinition

DATES = ["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]
STEP_COLUMNS = (
    "entered",
    "sent",
    "delivered",
    "opened",
    "clicked",
    "not_opened",
    "capped",
    "silent_hours",
    "goal",
    "exited",
    "dropped",
)
JOURNEY_COLUMNS = (
    "entries",
    "unique_users",
    "sent",
    "opened",
    "capped",
    "silent_hours",
    "goals",
    "goal_rate",
)


def parse_tick(text: str) -> timedelta:
    found = re.fullmatch(r"(\d+)\s*(s|m|h|d)", text.strip())
    if not found or int(found[1]) == 0:
        raise click.BadParameter(f"{text!r}: use a duration like 1h, 15m, 1d", param_hint="--tick")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[found[2]]
    return timedelta(**{unit: int(found[1])})


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@click.command()
@click.argument("journey")
@click.option("--from", "start", required=True, type=click.DateTime(DATES), help="Start (UTC).")
@click.option("--to", "end", required=True, type=click.DateTime(DATES), help="End (UTC).")
@click.option("--users", type=click.IntRange(min=1), default=None, help="The first N users by id.")
@click.option(
    "--segment",
    default=None,
    help="Only the users the archive had in segment S; its size over time is reported.",
)
@click.option(
    "--segments",
    "segments_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Segment definitions (default: the running system's).",
)
@click.option(
    "--journey",
    "only",
    multiple=True,
    help="Of a file of several journeys, back-test this one (repeatable; default: all).",
)
@click.option("--compare", "other", default=None, help="Another journey file or id to compare.")
@click.option("--tick", default="1h", show_default=True, help="The simulated clock's step.")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@click.option(
    "--html",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write an HTML report with the journey graphs.",
)
@api_key_option
def backtest(
    journey: str,
    start: datetime,
    end: datetime,
    users: int | None,
    segment: str | None,
    segments_file: Path | None,
    only: tuple[str, ...],
    other: str | None,
    tick: str,
    fmt: str,
    html: Path | None,
    api_key: str | None,
) -> None:
    """Replay the archive from its start to --to through JOURNEY (a journey file, or the
    id of a journey of the running system, ID or ID@VERSION), launched at --from, and
    report what it would have done: entries, sends per step, opens, caps, silent hours,
    goal rate. Nothing is sent, nothing written.

    \b
      reach backtest examples/seed-journeys.yaml --journey reengage-once \\
          --segments examples/seed-segments.yaml --from 2026-12-07 --to 2026-12-21
    """
    from delivery.backtest import simulated
    from delivery.simulator import profiles
    from projections.archive import Selection, count_inputs

    if users is not None and segment is not None:
        raise click.UsageError("--users and --segment exclude each other")
    start, end = _utc(start), _utc(end)
    if end <= start:
        raise click.UsageError("--to must be after --from")
    step = parse_tick(tick)
    settings = _settings()
    segments = _segments(segments_file, api_key)
    tested = _journeys(journey, only, api_key)
    runs: list[tuple[str, Sequence[JourneyDefinition]]] = [(_label(journey), tested)]
    if other is not None:
        label = _label(other)
        label = f"{label} (compared)" if label == runs[0][0] else label
        runs.append((label, next_versions(tested, _journeys(other, only, api_key))))
    if segment is not None and segment not in {s.id for s in segments}:
        raise click.UsageError(f"no segment '{segment}' among the definitions")
    simulate = simulated(profiles(settings.simulator), settings.simulator_seed)
    try:
        tests = [
            Backtest(segments, definitions, start, end, tick=step, simulate=simulate)
            for _, definitions in runs
        ]
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    selection = Selection(users=users, segment=segment)
    from cli.query import local_data

    with local_data(settings):
        try:
            client = _open(settings.clickhouse)
            total = count_inputs(client, settings.clickhouse_database, end, selection)
            reports = _replay(client, settings.clickhouse_database, tests, selection, total)
        except Exception as error:
            raise click.ClickException(str(error).strip().splitlines()[0]) from None
    labelled = [
        (label, report, definitions)
        for (label, definitions), report in zip(runs, reports, strict=True)
    ]
    names = {s.id: s.name for s in segments if s.id == segment}
    if fmt == "json":
        click.echo(orjson.dumps(as_json(labelled, segment), default=str))
    else:
        print_tables(labelled, segment)
    if html is not None:
        from projections.report import write_report
        from projections.report_backtest import report_data

        write_report(html, report_data(labelled, names, "day", datetime.now(UTC)))
        click.echo(f"wrote {html}", err=fmt == "json")


def _open(dsn: str) -> Any:
    """A client of the archive (reads only: no table is created or changed)."""
    import clickhouse_connect

    if dsn.startswith("chdb://"):
        import chdb  # noqa: F401  (registers the chdb backend)
    return clickhouse_connect.get_client(dsn=dsn)


def _replay(
    client: Any, database: str, tests: list[Backtest], selection: Any, total: int
) -> list[Report]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from projections.archive import replay

    with Progress(
        TextColumn("back-testing"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("inputs"),
        console=Console(stderr=True),
        transient=True,
    ) as progress:
        task = progress.add_task("", total=total)
        return replay(client, database, tests, selection, lambda n: progress.advance(task, n))


def next_versions(
    first: Sequence[JourneyDefinition], other: Sequence[JourneyDefinition]
) -> list[JourneyDefinition]:
    """The compared journeys, a journey at the same id and version as a first one taken
    as its next version: another definition makes other commands (ids of their own),
    whose feedback the archive cannot have."""
    versions = {journey.id: journey.version or 1 for journey in first}
    return [
        journey.model_copy(update={"version": versions[journey.id] + 1})
        if journey.id in versions and (journey.version or 1) == versions[journey.id]
        else journey
        for journey in other
    ]


def _label(source: str) -> str:
    path = Path(source)
    return path.stem if path.is_file() else source


def _segments(path: Path | None, api_key: str | None) -> list[SegmentDefinition]:
    from files.reading import DefinitionError
    from files.segments import load

    if path is not None:
        try:
            return load(path)
        except DefinitionError as error:
            raise click.ClickException(str(error)) from None
    answer = _api_get(api_key, "/v1/segments", "give the segments' file with --segments")
    return [
        SegmentDefinition.model_validate(_without(item, "expression"))
        for item in answer["segments"]
    ]


def _journeys(source: str, only: Sequence[str], api_key: str | None) -> list[JourneyDefinition]:
    from files.journeys import load
    from files.reading import DefinitionError

    path = Path(source)
    if path.is_file():
        try:
            found = load(path)
        except DefinitionError as error:
            raise click.ClickException(str(error)) from None
        if only:
            missing = sorted(set(only) - {j.id for j in found})
            if missing:
                raise click.UsageError(f"{source} has no journey {', '.join(missing)}")
            found = [j for j in found if j.id in only]
        return found
    journey_id, _, version = source.partition("@")
    query = f"?version={version}" if version else ""
    answer = _api_get(
        api_key, f"/v1/journeys/{journey_id}{query}", f"no file {source}; give a journey file"
    )
    return [JourneyDefinition.model_validate(answer["definition"])]


def _api_get(api_key: str | None, path: str, otherwise: str) -> Any:
    from cli.common import call
    from client.system import running_api

    if running_api(_settings().data_dir) is None:
        raise click.UsageError(f"no system is running to ask: {otherwise}")
    return call(api_key, "GET", path)


def _without(item: Mapping[str, Any], key: str) -> dict[str, Any]:
    return {name: value for name, value in item.items() if name != key}


# --- output ---------------------------------------------------------------------------


def as_json(
    runs: Sequence[tuple[str, Report, Sequence[JourneyDefinition]]], segment: str | None
) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for index, (label, report, _) in enumerate(runs):
        summary = report.summary()
        summary["label"] = label
        if segment is not None:
            summary["segment"] = {
                "id": segment,
                "sizes": [[m.isoformat(), n] for m, n in report.sizes(segment, timedelta(days=1))],
            }
        found["backtest" if index == 0 else "compare"] = summary
    if len(runs) == 2:
        found["difference"] = difference(runs[0][1], runs[1][1])
    return found


def difference(one: Report, two: Report) -> dict[str, Any]:
    """Per journey, the figures of the second minus the first's."""
    found: dict[str, Any] = {}
    first, second = one.summary()["journeys"], two.summary()["journeys"]
    for journey_id in sorted(first.keys() | second.keys()):
        a, b = first.get(journey_id, {}), second.get(journey_id, {})
        found[journey_id] = {
            name: (b.get(name) or 0) - (a.get(name) or 0)
            for name in JOURNEY_COLUMNS
            if name != "goal_rate"
        }
    return found


def print_tables(
    runs: Sequence[tuple[str, Report, Sequence[JourneyDefinition]]], segment: str | None
) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for label, report, definitions in runs:
        title = f"back-test {label}: {report.start:%Y-%m-%d %H:%M} to {report.end:%Y-%m-%d %H:%M}"
        inputs = ", ".join(f"{n:,} {kind}" for kind, n in sorted(report.inputs.items()))
        sources = ", ".join(f"{n:,} from the {kind}" for kind, n in sorted(report.feedback.items()))
        console.print(f"[bold]{title}[/bold] — {report.users:,} users; {inputs or 'no inputs'}")
        if sources:
            console.print(f"feedback of the commands made: {sources}")
        for definition in definitions:
            counts = report.journeys[definition.id].as_dict()
            table = Table(
                *JOURNEY_COLUMNS, title=f"{definition.id} (version {definition.version or 1})"
            )
            table.add_row(*(_cell(counts[name]) for name in JOURNEY_COLUMNS))
            console.print(table)
            # A column per step, a row per figure: journeys have few steps.
            order = {node.id: index for index, node in enumerate(definition.nodes)}
            figures = dict(sorted(counts["steps"].items(), key=lambda item: order.get(item[0], 0)))
            steps = Table("per step", *figures)
            for name in STEP_COLUMNS:
                steps.add_row(name, *(_cell(found.get(name, 0)) for found in figures.values()))
            if figures:
                console.print(steps)
        if segment is not None:
            sizes = Table("day", f"{segment} members", title=f"{segment} over time")
            for moment, size in report.sizes(segment, timedelta(days=1)):
                sizes.add_row(f"{moment - timedelta(days=1):%Y-%m-%d}", f"{size:,}")
            console.print(sizes)
    if len(runs) == 2:
        table = Table(
            "journey",
            *(n for n in JOURNEY_COLUMNS if n != "goal_rate"),
            title="difference (compared - first)",
        )
        for journey_id, delta in difference(runs[0][1], runs[1][1]).items():
            table.add_row(journey_id, *(f"{value:+,}" for value in delta.values()))
        console.print(table)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1%}"
    return f"{value:,}"
