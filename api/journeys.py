"""HTTP routes for journeys: apply definitions, drive the lifecycle (launch, pause,
resume, stop, rename), list and show them, put users in through an API entry, and read
their statistics.

Definition changes are records on the definitions topic; each route answers once this
worker's registry has folded its own record, so a following read sees it.

The status reported is the stored lifecycle, or ``finished`` for a launched journey
whose entries can admit nobody any more and that nobody is inside
(engine/journeys/lifecycle.py); who is inside comes from ClickHouse, so a worker
without projections reports such a journey as ``launched``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Mapping
from datetime import datetime
from functools import partial
from typing import Any

from aiohttp import web
from pydantic import ValidationError
from pydantic_core import from_json

from api.clock import NotStarted, stamp_now
from api.definitions import DefinitionRoutes, Respond
from engine.journeys.lifecycle import Status, derived_status, entries_over
from files.journeys import from_document
from projections.store import Projections
from schemas.commands import JourneyEntryRequest
from schemas.definitions import (
    DefinitionRefused,
    Journey,
    JourneyAction,
    JourneyStatus,
)
from schemas.journeys import ApiEntry, AudienceEntry, Entry, JourneyDefinition, TriggerEntry
from streams.engine import Engine
from streams.ingest import IngestProducer
from streams.outbound import webhook_refusal

log = logging.getLogger(__name__)

FOLD_TIMEOUT = 10.0
"""Seconds a definition change waits for this worker to fold it before answering."""
ENTRY_FIELDS = frozenset({"user_id", "properties", "entry_id"})


def entry_summary(entry: Entry) -> str:
    """One line per entry for listings: ``audience inactive-7d (every 1 weeks on fri at
    17:00 user)``, ``trigger CartAbandoned (filtered)``, ``api``."""
    if isinstance(entry, AudienceEntry):
        schedule = entry.schedule
        at = schedule.at.strftime("%H:%M") if schedule.at else ""
        if schedule.kind == "now":
            when = "at launch"
        elif schedule.kind == "once":
            when = f"once {schedule.date} {at} {schedule.timezone}"
        else:
            days = f" on {','.join(schedule.weekdays)}" if schedule.weekdays else ""
            when = f"every {schedule.every} {schedule.unit}{days} at {at} {schedule.timezone}"
        return f"audience {entry.segment} ({when})"
    if isinstance(entry, TriggerEntry):
        return f"trigger {entry.match.event}" + (" (filtered)" if entry.match.filters else "")
    return "api"


def lifecycle(journey_id: str, journey: Journey, derived: Status | None = None) -> dict[str, Any]:
    """The journey's lifecycle; ``derived`` is the status to report (default: the
    stored one)."""
    status = journey.status
    return {
        "id": journey_id,
        "name": journey.name,
        "status": derived or journey.state.value,
        "launch": status.launch if status else 0,
        "launched_at": status.launched_at.isoformat() if status and status.launched_at else None,
        "stopped_at": status.stopped_at.isoformat() if status and status.stopped_at else None,
    }


def summary(journey_id: str, journey: Journey, derived: Status | None = None) -> dict[str, Any]:
    return {
        **lifecycle(journey_id, journey, derived),
        "version": max(journey.versions),
        "entries": [entry_summary(entry) for entry in journey.latest.entries],
    }


class JourneyRoutes(DefinitionRoutes):
    def __init__(
        self,
        engine: Engine,
        projections: Projections,
        producer: Callable[[], IngestProducer],
        respond: Respond,
    ) -> None:
        super().__init__(engine, producer, respond)
        self._projections = projections

    async def _journey(self, request: web.Request) -> tuple[str, Journey | None]:
        await self._engine.definitions.ready.wait()
        journey_id = request.match_info["journey_id"]
        journey = self.registry.journeys.get(journey_id)
        return journey_id, journey if journey and journey.versions else None

    async def _statuses(self, journeys: Mapping[str, Journey]) -> dict[str, Status]:
        """The status to report for each journey: ``finished`` derived where its entries
        are over, asking ClickHouse who is inside only for those."""
        now = self._engine.clock.now()
        over = [
            journey_id
            for journey_id, journey in journeys.items()
            if entries_over(journey.latest, journey.status, now)
        ]
        inside = await self._inside(over) if over else {}
        return {
            journey_id: derived_status(journey.latest, journey.status, now, inside.get(journey_id))
            for journey_id, journey in journeys.items()
        }

    async def _inside(self, journey_ids: Collection[str]) -> dict[str, int]:
        """Users inside each journey, from ClickHouse; empty when this worker cannot
        tell (no projections here, ClickHouse not open or failing)."""
        from projections.journey_stats import inside_now

        client = self._projections.client
        if not self._engine.settings.projects or client is None:
            return {}
        try:
            return await asyncio.to_thread(inside_now, client, journey_ids)
        except Exception as error:  # a listing still answers, with the stored status
            log.warning("who is inside journeys %s is unknown: %s", sorted(journey_ids), error)
            return {}

    def _missing(self, journey_id: str) -> web.Response:
        return self._json({"error": f"no journey '{journey_id}'"}, 404)

    # --- definitions ------------------------------------------------------------------

    async def apply(self, request: web.Request) -> web.Response:
        """One journey or a list; all are checked before any is written."""
        journeys = await self._document(request, "journey", from_document)
        if isinstance(journeys, web.Response):
            return journeys
        refused = webhook_refusal(journeys, self._engine.settings.webhook_allow_list)
        if refused:
            return self._json({"error": refused}, 400)
        await self._engine.definitions.ready.wait()
        async with self._writing:
            now = self._engine.clock.now()
            try:
                events = [self.registry.prepare_journey(journey, now) for journey in journeys]
            except DefinitionRefused as error:
                return self._json({"error": str(error)}, 400)
            too_large = self._too_large("journey", events)
            if too_large is not None:
                return too_large
            applied: list[dict[str, Any]] = []
            for event in events:
                definition = event.definition
                if not await self._produce(event, partial(self._has_version, definition)):
                    what = f"journey '{definition.id}' version {definition.version}"
                    return self._unread(what, applied=applied)
                applied.append({"id": definition.id, "version": definition.version})
        return self._json({"applied": applied})

    def _has_version(self, definition: JourneyDefinition) -> bool:
        journey = self.registry.journeys.get(definition.id)
        return journey is not None and definition.version in journey.versions

    async def change(self, request: web.Request) -> web.Response:
        """launch, pause, resume, stop (from the path) and rename (``{"name": ...}``)."""
        action = JourneyAction(request.match_info["action"])
        name: str | None = None
        if action is JourneyAction.RENAME:
            try:
                body = from_json(await request.read())
                name = body["name"].strip()
                if not 1 <= len(name) <= 256:
                    raise ValueError(name)
            except (ValueError, KeyError, TypeError, AttributeError):
                return self._json({"error": 'body must be {"name": "..."} (1 to 256 chars)'}, 400)
        journey_id, journey = await self._journey(request)
        if journey is None:
            return self._missing(journey_id)
        try:
            stamp = await stamp_now(self._engine)
        except NotStarted as error:
            return self._json({"error": str(error)}, 409)
        async with self._writing:
            try:
                event = self.registry.prepare_action(journey_id, action, stamp, name)
            except DefinitionRefused as error:
                return self._json({"error": str(error)}, 409)
            if not await self._produce(event, partial(_has_status, journey, event.model_dump())):
                return self._unread(f"journey '{journey_id}' {action}")
        # A launch answers "launched": its runs have not entered anyone yet.
        derived = None
        if action is not JourneyAction.LAUNCH:
            derived = (await self._statuses({journey_id: journey}))[journey_id]
        return self._json({**lifecycle(journey_id, journey, derived), "action": action.value})

    # --- reads ------------------------------------------------------------------------

    async def list(self, request: web.Request) -> web.Response:
        await self._engine.definitions.ready.wait()
        journeys = {
            journey_id: journey
            for journey_id, journey in sorted(self.registry.journeys.items())
            if journey.versions
        }
        statuses = await self._statuses(journeys)
        return self._json(
            {
                "journeys": [
                    summary(journey_id, journey, statuses[journey_id])
                    for journey_id, journey in journeys.items()
                ]
            }
        )

    async def show(self, request: web.Request) -> web.Response:
        """The latest definition, or ``?version=N``, with the lifecycle and versions."""
        journey_id, journey = await self._journey(request)
        if journey is None:
            return self._missing(journey_id)
        asked = request.query.get("version")
        if asked is None:
            version = max(journey.versions)
        elif asked.isdigit():
            version = int(asked)
        else:
            return self._json({"error": f"version must be a whole number, not {asked!r}"}, 400)
        definition = journey.versions.get(version)
        if definition is None:
            versions = ", ".join(str(number) for number in sorted(journey.versions))
            message = f"journey '{journey_id}' has no version {version} (versions: {versions})"
            return self._json({"error": message}, 404)
        statuses = await self._statuses({journey_id: journey})
        return self._json(
            {
                **lifecycle(journey_id, journey, statuses[journey_id]),
                "version": version,
                "versions": sorted(journey.versions),
                "definition": definition.model_dump(mode="json"),
            }
        )

    async def stats(self, request: web.Request) -> web.Response:
        from projections.journey_stats import journey_stats

        journey_id, journey = await self._journey(request)
        if journey is None:
            return self._missing(journey_id)
        if not self._engine.settings.projects:
            return self._json({"error": "this worker's role does not run projections"}, 503)
        client = self._projections.client
        if client is None:
            return self._json({"error": "ClickHouse is not open yet"}, 503)
        stats = await asyncio.to_thread(journey_stats, client, journey_id)
        inside = stats.get("journey", {}).get("inside_now")
        status = derived_status(journey.latest, journey.status, self._engine.clock.now(), inside)
        return self._json(
            {"journey_id": stats.pop("journey_id", journey_id), "status": status, **stats}
        )

    # --- API entries ------------------------------------------------------------------

    async def enter(self, request: web.Request) -> web.Response:
        """``{"users": [{"user_id": ..., "properties": {...}}, ...]}`` into a launched
        journey with an API entry; refused whole when any item is invalid, as ingest."""
        body = await request.read()
        try:
            # NaN and infinities are no JSON: refused here rather than sent on as null.
            users = (await asyncio.to_thread(from_json, body, allow_inf_nan=False))["users"]
            if not isinstance(users, list):
                raise TypeError(type(users).__name__)
        except (ValueError, KeyError, TypeError) as error:
            return self._json(
                {"error": f'body must be {{"users": [{{"user_id": ...}}, ...]}}: {error}'}, 400
            )
        settings = self._engine.settings
        if len(users) > settings.max_batch_items:
            message = f"batch has {len(users)} users, over the limit of {settings.max_batch_items}"
            return self._json({"error": message}, 400)
        journey_id, journey = await self._journey(request)
        if journey is None:
            return self._missing(journey_id)
        if journey.state is not JourneyStatus.LAUNCHED:
            message = f"journey '{journey_id}' is {journey.state}: users enter only when launched"
            return self._json({"error": message}, 409)
        if not any(isinstance(entry, ApiEntry) for entry in journey.latest.entries):
            message = f"journey '{journey_id}' has no api entry: users cannot be put in by API"
            return self._json({"error": message}, 409)
        now = self._engine.clock.now()
        # Up to REACH_MAX_BATCH_ITEMS entries to validate: not on the loop.
        errors, encoded, entry_ids = await asyncio.to_thread(
            _entries, journey_id, users, now, settings.max_record_bytes
        )
        if errors:
            return self._json({"accepted": 0, "errors": errors}, 400)
        # Packed per partition by user id, as ingest packs events: a user's entries
        # land where their events and state are.
        await self._producer().send_encoded(self._engine.topics.journey_entries, encoded)
        return self._json({"accepted": len(encoded), "entry_ids": entry_ids})


def _entries(
    journey_id: str, users: list[Any], now: datetime, max_record_bytes: int
) -> tuple[list[dict[str, Any]], list[tuple[str, bytes]], list[str]]:
    """(errors by index, user id and record of each valid entry, entry ids)."""
    errors: list[dict[str, Any]] = []
    encoded: list[tuple[str, bytes]] = []
    entry_ids: list[str] = []
    for index, item in enumerate(users):
        try:
            entry = _entry(journey_id, item, now)
        except ValueError as error:
            errors.append({"index": index, "detail": str(error)})
            continue
        raw = entry.model_dump_json().encode()
        if len(raw) > max_record_bytes:
            detail = f"entry is {len(raw)} bytes, over the limit of {max_record_bytes}"
            errors.append({"index": index, "detail": detail})
            continue
        encoded.append((entry.user_id, raw))
        entry_ids.append(entry.entry_id)
    return errors, encoded, entry_ids


def _has_status(journey: Journey, expected: dict[str, Any]) -> bool:
    return journey.status is not None and journey.status.model_dump() == expected


def _entry(journey_id: str, item: Any, now: datetime) -> JourneyEntryRequest:
    if not isinstance(item, dict):
        raise ValueError(f"expected an object, got {type(item).__name__}")
    unknown = sorted(set(item) - ENTRY_FIELDS)
    if unknown:
        raise ValueError(
            f"unknown fields {', '.join(unknown)} (allowed: user_id, properties, entry_id)"
        )
    try:
        return JourneyEntryRequest.model_validate({**item, "journey_id": journey_id, "at": now})
    except ValidationError as error:
        raise ValueError(
            "; ".join(
                f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}"
                for problem in error.errors(include_url=False)
                # The derived entry id's own complaint when another field failed: noise.
                if problem["type"] != "default_factory_not_called"
            )
        ) from None
