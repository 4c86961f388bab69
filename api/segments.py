"""HTTP routes for segment definitions: apply, list, show, delete (and preview)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from pydantic_core import from_json

from api.definitions import DefinitionTooLarge, check_sizes
from engine.segments.windows import horizon_problems
from files.segments import DefinitionError, from_document, from_item
from schemas.definitions import DefinitionRefused, Definitions
from schemas.segment_language import SegmentSyntaxError, parse, size_problem
from schemas.segments import Condition, SegmentDefinition
from streams.definitions import DefinitionsService
from streams.ingest import IngestProducer

Previewer = Callable[[Condition, int], Awaitable[tuple[int, int, list[str]]]]
"""(condition, sample size) -> (members, users, sample): who matches, over the segment
state of this worker (the worker factory passes its segment runtime's)."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Respond = Callable[..., web.Response]
MAX_SAMPLE = 1000
"""Most user ids a preview lists."""
CLIENT_CHECK_SECONDS = 0.25
"""How often a running preview checks that its client is still there."""


def describe(definition: SegmentDefinition) -> dict[str, Any]:
    from schemas.segment_language import format as format_condition

    return {
        **definition.model_dump(mode="json"),
        "expression": format_condition(definition.condition),
    }


class SegmentRoutes:
    def __init__(
        self,
        definitions: DefinitionsService,
        producer: Callable[[], IngestProducer],
        topic: str,
        respond: Respond,
        previewer: Previewer | None,
        horizon: timedelta,
        max_record_bytes: int,
    ) -> None:
        self._horizon = horizon
        self._max_record_bytes = max_record_bytes
        self._definitions = definitions
        self._previewer = previewer
        self._producer = producer
        self._topic = topic
        self._json = respond

    @property
    def registry(self) -> Definitions:
        return self._definitions.registry

    async def apply(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            # Parsing and validating a large document takes a while: not on the loop.
            definitions = await asyncio.to_thread(_definitions, body, self._max_record_bytes)
        except DefinitionTooLarge as error:
            return self._json({"error": str(error)}, 413)
        except DefinitionError as error:
            return self._json({"error": str(error)}, 400)
        except ValueError as error:
            return self._json({"error": f"body is not JSON: {error}"}, 400)
        await self._definitions.ready.wait()
        applied: list[dict[str, Any]] = []
        now = datetime.now(UTC)
        for definition in definitions:
            problems = horizon_problems(definition.condition, self._horizon, now)
            if problems:
                message = f"segment '{definition.id}': " + "; ".join(problems)
                return self._json({"error": message, "applied": applied}, 400)
            try:
                event = self.registry.prepare(definition, now)
            except DefinitionRefused as error:
                return self._json({"error": str(error), "applied": applied}, 400)
            record = event.model_dump_json().encode()
            if len(record) > self._max_record_bytes:
                message = (
                    f"segment '{definition.id}' is {len(record)} bytes as a record, over the "
                    f"limit of {self._max_record_bytes} bytes"
                )
                return self._json({"error": message, "applied": applied}, 413)
            await self._producer().send_keyed(
                self._topic, f"segment:{definition.id}".encode(), record
            )
            await self._definitions.wait_for_version(
                definition.id, event.definition.version, timeout=10
            )
            applied.append({"id": definition.id, "version": event.definition.version})
        return self._json({"applied": applied})

    async def list(self, request: web.Request) -> web.Response:
        await self._definitions.ready.wait()
        return self._json(
            {"segments": [describe(d) for _, d in sorted(self.registry.segments.items())]}
        )

    async def show(self, request: web.Request) -> web.Response:
        await self._definitions.ready.wait()
        definition = self.registry.segments.get(request.match_info["segment_id"])
        if definition is None:
            return self._json({"error": f"no segment '{request.match_info['segment_id']}'"}, 404)
        return self._json(describe(definition))

    async def preview(self, request: web.Request) -> web.Response:
        """Count and sample the users matching a condition now; nothing is saved."""
        body = await request.read()
        try:
            condition, sample = await asyncio.to_thread(_preview_request, body)
        except (SegmentSyntaxError, _OverLimit) as error:
            return self._json({"error": str(error)}, 400)
        except (
            DefinitionError,
            ValueError,
            KeyError,
            TypeError,
            AttributeError,
            OverflowError,  # a sample of 1e400
        ) as error:
            return self._json(
                {"error": f'body must be {{"expression": "..."}} or {{"condition": ...}}: {error}'},
                400,
            )
        if self._previewer is None:
            return self._json({"error": "segments are not served by this process"}, 503)
        await self._definitions.ready.wait()
        # A preview over many users takes a while: it stops when its client leaves.
        work = asyncio.ensure_future(self._previewer(condition, sample))
        try:
            while not work.done():
                await asyncio.wait({work}, timeout=CLIENT_CHECK_SECONDS)
                if request.transport is None or request.transport.is_closing():
                    work.cancel()
                    return self._json({"error": "the client left: preview stopped"}, 400)
        finally:
            work.cancel()  # also when this handler is cancelled; nothing if done
        members, users, found = work.result()
        return self._json({"members": members, "users": users, "sample": found})

    async def delete(self, request: web.Request) -> web.Response:
        await self._definitions.ready.wait()
        segment_id = request.match_info["segment_id"]
        try:
            event = self.registry.prepare_delete(segment_id, datetime.now(UTC))
        except DefinitionRefused as error:
            return self._json({"error": str(error)}, 404 if "no segment" in str(error) else 400)
        await self._producer().send_keyed(
            self._topic, f"segment:{segment_id}".encode(), event.model_dump_json().encode()
        )
        await self._definitions.wait_for_version(segment_id, event.version, timeout=10)
        return self._json({"deleted": segment_id, "version": event.version})


def _definitions(body: bytes, max_record_bytes: int) -> list[SegmentDefinition]:
    """The definitions of an apply request, each within the size and condition limits."""
    document = from_json(body)
    check_sizes(document, "segment", max_record_bytes)
    definitions = from_document(document)
    for definition in definitions:
        problem = size_problem(definition.condition)
        if problem is not None:
            raise DefinitionError(f"segment '{definition.id}': {problem}")
    return definitions


def _preview_request(body: bytes) -> tuple[Condition, int]:
    document = from_json(body)
    sample = min(max(int(document.get("sample", 10)), 0), MAX_SAMPLE)
    if "expression" in document:
        return parse(str(document["expression"])), sample
    condition = from_item(
        {"id": "preview", "name": "preview", "condition": document["condition"]}
    ).condition
    problem = size_problem(condition)
    if problem is not None:
        raise _OverLimit(problem)
    return condition, sample


class _OverLimit(ValueError):
    """A condition over the limits of the segment language."""
