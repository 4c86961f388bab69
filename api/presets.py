"""HTTP routes for content presets: apply (one or a list, all checked before any is
written), list, show, delete (refused while a journey may still send it), and render
one for a given user's tags and properties, as a preview.

Each change answers once this worker's registry has folded its own record, so a
following read (or a journey applied next) sees it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiohttp import web
from pydantic_core import from_json

from api.definitions import DefinitionRoutes
from delivery.push_payload import preset_problems
from delivery.render import RenderedContent, render
from files.presets import from_document
from schemas.definitions import (
    DefinitionRefused,
)
from schemas.presets import PresetDefinition

RENDER_FIELDS = frozenset({"tags", "properties", "user_id"})
RENDER_BODY = 'body must be {"tags": {...}, "properties": {...}, "user_id": "..."}'


def summary(preset: PresetDefinition) -> dict[str, Any]:
    return {
        "id": preset.id,
        "name": preset.name,
        "channel": preset.channel.value,
        "version": preset.version,
        "default_language": preset.default_language,
        "languages": sorted(preset.variants),
    }


class PresetRoutes(DefinitionRoutes):
    async def _preset(self, request: web.Request) -> tuple[str, PresetDefinition | None]:
        await self._engine.definitions.ready.wait()
        preset_id = request.match_info["preset_id"]
        return preset_id, self.registry.presets.get(preset_id)

    def _folded(self, preset_id: str, version: int) -> Callable[[], bool]:
        return lambda: self.registry.next_preset_version(preset_id) > version

    async def apply(self, request: web.Request) -> web.Response:
        presets = await self._document(request, "preset", from_document)
        if isinstance(presets, web.Response):
            return presets
        for preset in presets:
            too_big = preset_problems(preset)
            if too_big:
                return self._json({"error": f"preset '{preset.id}': {'; '.join(too_big)}"}, 400)
        await self._engine.definitions.ready.wait()
        async with self._writing:
            now = self._engine.clock.now()
            try:
                events = [self.registry.prepare_preset(preset, now) for preset in presets]
            except DefinitionRefused as error:
                return self._json({"error": str(error)}, 409)
            too_large = self._too_large("preset", events)
            if too_large is not None:
                return too_large
            applied: list[dict[str, Any]] = []
            for event in events:
                definition = event.definition
                if not await self._produce(event, self._folded(definition.id, definition.version)):
                    what = f"preset '{definition.id}' version {definition.version}"
                    return self._unread(what, applied=applied)
                applied.append({"id": definition.id, "version": definition.version})
        return self._json({"applied": applied})

    async def list(self, request: web.Request) -> web.Response:
        await self._engine.definitions.ready.wait()
        presets = sorted(self.registry.presets.items())
        return self._json({"presets": [summary(preset) for _, preset in presets]})

    async def show(self, request: web.Request) -> web.Response:
        """The definition, with the journeys whose versions send it."""
        preset_id, preset = await self._preset(request)
        if preset is None:
            return self._json({"error": f"no preset '{preset_id}'"}, 404)
        used_by = sorted(
            journey_id
            for journey_id, journey in self.registry.journeys.items()
            if any(preset_id in version.presets for version in journey.versions.values())
        )
        return self._json(
            {**summary(preset), "definition": preset.model_dump(mode="json"), "used_by": used_by}
        )

    async def delete(self, request: web.Request) -> web.Response:
        preset_id, preset = await self._preset(request)
        if preset is None:
            return self._json({"error": f"no preset '{preset_id}'"}, 404)
        async with self._writing:
            try:
                event = self.registry.prepare_preset_delete(preset_id, self._engine.clock.now())
            except DefinitionRefused as error:
                return self._json({"error": str(error)}, 409)
            if not await self._produce(event, self._folded(preset_id, event.version)):
                return self._unread(f"deleting preset '{preset_id}'")
        return self._json({"deleted": preset_id, "version": event.version})

    async def render(self, request: web.Request) -> web.Response:
        """``{"tags": {...}, "properties": {...}, "user_id": "..."}`` -> the content as
        that user would get it, or 422 naming what is missing. Nothing is sent."""
        try:
            body = from_json(await request.read() or b"{}")
            tags, properties, user_id = _render_body(body)
        except (ValueError, TypeError) as error:
            return self._json({"error": f"{RENDER_BODY}: {error}"}, 400)
        preset_id, preset = await self._preset(request)
        if preset is None:
            return self._json({"error": f"no preset '{preset_id}'"}, 404)
        # Up to half a megabyte of HTML to fill and check: not on the loop.
        result = await asyncio.to_thread(render, preset, tags, properties, user_id)
        if isinstance(result, RenderedContent):
            return self._json(result.model_dump(mode="json"))
        return self._json({"error": result.message, **result.model_dump(mode="json")}, 422)


def _render_body(body: Any) -> tuple[dict[str, Any], dict[str, Any], str]:
    if not isinstance(body, dict):
        raise TypeError(f"expected an object, got {type(body).__name__}")
    unknown = sorted(set(body) - RENDER_FIELDS)
    if unknown:
        raise ValueError(f"unknown fields {', '.join(unknown)}")
    tags, properties = body.get("tags", {}), body.get("properties", {})
    user_id = body.get("user_id", "")
    if not isinstance(tags, dict) or not isinstance(properties, dict):
        raise TypeError("tags and properties are objects")
    if not isinstance(user_id, str):
        raise TypeError("user_id is a string")
    return tags, properties, user_id
