"""HTTP routes about one user: ``GET /v1/users/{user_id}/explain``, their timeline
from the projections and, with ``?journey=``, why they did or did not get a step's
message (``projections.explain``)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from aiohttp import web

from api.definitions import Respond
from projections.store import Projections
from streams.engine import Engine

EXPLAIN_OPTIONS = frozenset({"journey", "step", "from", "to"})


def parse_instant(text: str) -> datetime:
    """An ISO 8601 date or instant (UTC unless it says otherwise)."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class UserRoutes:
    def __init__(self, engine: Engine, projections: Projections, json: Respond) -> None:
        self._engine = engine
        self._projections = projections
        self._json = json

    async def explain(self, request: web.Request) -> web.Response:
        """``?journey=J&step=S&from=...&to=...``: all optional."""
        from projections.explain import explain, fetch

        user_id = request.match_info["user_id"]
        query = request.query
        unknown = sorted(set(query) - EXPLAIN_OPTIONS)
        if unknown:
            return self._json({"error": f"unknown option(s): {', '.join(unknown)}"}, 400)
        try:
            start = parse_instant(query["from"]) if "from" in query else None
            end = parse_instant(query["to"]) if "to" in query else None
        except ValueError as error:
            return self._json({"error": f"from/to must be ISO 8601 instants: {error}"}, 400)
        definitions = self._engine.definitions
        await definitions.ready.wait()
        registry = definitions.registry
        journey_id = query.get("journey")
        definition = None
        if journey_id is not None:
            journey = registry.journeys.get(journey_id)
            if journey is None or not journey.versions:
                return self._json({"error": f"no journey '{journey_id}'"}, 404)
            definition = journey.latest
            step = query.get("step")
            if step is not None and step not in {node.id for node in definition.nodes}:
                return self._json({"error": f"journey '{journey_id}' has no step '{step}'"}, 404)
        if not self._engine.settings.projects:
            return self._json({"error": "this worker's role does not run projections"}, 503)
        client = self._projections.client
        if client is None:
            return self._json({"error": "ClickHouse is not open yet"}, 503)
        database = self._engine.settings.clickhouse_database
        facts = await asyncio.to_thread(fetch, client, database, user_id, journey_id)
        segments = dict(registry.segments)
        answer = await asyncio.to_thread(
            explain, facts, definition, segments, query.get("step"), start, end
        )
        return self._json(answer)
