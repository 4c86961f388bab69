"""A back-test's figures as the HTML report draws them (``projections.report``): each
journey's graph with its per-step counts and edges, and segment sizes over time."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from engine.backtest import JourneyCounts, Report
from projections.journey_stats import STEP_COUNTS
from projections.report import Bucket, EdgeCount, JourneyReport, ReportData, SegmentSeries
from schemas.journeys import JourneyDefinition

BUCKETS: dict[str, timedelta] = {"hour": timedelta(hours=1), "day": timedelta(days=1)}


def journey_report(
    definition: JourneyDefinition, counts: JourneyCounts, label: str = ""
) -> JourneyReport:
    """One journey's graph; ``label`` tells two back-tests of one journey apart."""
    steps = {
        step: {name: int(found[name]) for name in STEP_COUNTS}
        for step, found in counts.steps.items()
    }
    edges = [
        EdgeCount(source, output, target, users)
        for (source, output, target), users in sorted(counts.edges.items())
    ]
    figures = counts.as_dict()
    delivered, sent, clicked = figures["delivered"], figures["sent"], figures["clicked"]
    base = delivered or sent
    totals: dict[str, int | float | None] = {
        "entries": figures["entries"],
        "unique_users": figures["unique_users"],
        "inside_now": figures["inside_now"],
        "goals": figures["goals"],
        "sent": sent,
        "opened": figures["opened"],
        "clicked": clicked,
        "ctr": clicked / base if base else None,
    }
    if label:
        definition = definition.model_copy(
            update={"id": f"{definition.id}-{label}", "name": f"{definition.name} ({label})"}
        )
    return JourneyReport(definition, steps, edges, totals, f"back-test {label}".strip())


def report_data(
    runs: Sequence[tuple[str, Report, Sequence[JourneyDefinition]]],
    segments: Mapping[str, str],
    bucket: Bucket = "day",
    generated_at: datetime | None = None,
) -> ReportData:
    """``runs``: (label, report, the journeys it tested); ``segments``: id -> name of
    the segments whose sizes to draw."""
    journeys = [
        journey_report(definition, report.journeys[definition.id], label if len(runs) > 1 else "")
        for label, report, definitions in runs
        for definition in definitions
    ]
    series = [
        SegmentSeries(
            segment_id if len(runs) == 1 else f"{segment_id}-{label}",
            name if len(runs) == 1 else f"{name} ({label})",
            [
                (moment - BUCKETS[bucket], size)
                for moment, size in report.sizes(segment_id, BUCKETS[bucket])
            ],
        )
        for label, report, _ in runs
        for segment_id, name in segments.items()
    ]
    return ReportData(journeys, series, generated_at, bucket)
