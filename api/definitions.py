"""What the HTTP routes that change definitions (journeys, presets) share: one change
at a time from this process, each record written to the definitions topic, and an
answer only once this worker's registry has folded it, so a following read sees it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from aiohttp import web
from pydantic_core import from_json, to_json

from files.segments import DefinitionError
from schemas.definitions import (
    DefinitionEventType,
    Definitions,
    JourneyApplied,
    PresetApplied,
    record_key,
)
from streams.engine import Engine
from streams.ingest import IngestProducer

Respond = Callable[..., web.Response]
T = TypeVar("T")

FOLD_TIMEOUT = 10.0
"""Seconds a change waits for this worker to fold it before answering."""


class DefinitionRoutes:
    def __init__(
        self, engine: Engine, producer: Callable[[], IngestProducer], respond: Respond
    ) -> None:
        self._engine = engine
        self._producer = producer
        self._json = respond
        # Each change is prepared against the registry the previous one left, so two
        # applies cannot take one version.
        self._writing = asyncio.Lock()

    @property
    def registry(self) -> Definitions:
        return self._engine.definitions.registry

    async def _document(
        self, request: web.Request, kind: str, read: Callable[[Any], list[T]]
    ) -> list[T] | web.Response:
        """The body's definitions (one or a list, as ``read`` takes them), or the 400
        (413 for one too large) answer that says why not."""
        body = await request.read()
        limit = self._engine.settings.max_record_bytes

        def parse() -> list[T]:
            document = from_json(body)
            check_sizes(document, kind, limit)
            return read(document)

        try:
            # Parsing and validating a large document takes a while: not on the loop.
            return await asyncio.to_thread(parse)
        except DefinitionTooLarge as error:
            return self._json({"error": str(error)}, 413)
        except DefinitionError as error:
            return self._json({"error": str(error)}, 400)
        except ValueError as error:
            return self._json({"error": f"body is not JSON: {error}"}, 400)

    def _too_large(
        self, kind: str, events: Sequence[JourneyApplied | PresetApplied]
    ) -> web.Response | None:
        """The 413 answer when the record of one of ``events`` is over the record limit
        (the definitions topic takes records of that size at most)."""
        limit = self._engine.settings.max_record_bytes
        for event in events:
            size = len(event.model_dump_json().encode())
            if size > limit:
                message = (
                    f"{kind} '{event.definition.id}' is {size} bytes as a record, over the "
                    f"limit of {limit} bytes"
                )
                return self._json({"error": message}, 413)
        return None

    async def _produce(self, event: DefinitionEventType, folded: Callable[[], bool]) -> bool:
        """Write the record; False when this worker has not read it back in time."""
        await self._producer().send_keyed(
            self._engine.topics.definitions, record_key(event), event.model_dump_json().encode()
        )
        return await self._engine.definitions.wait_for(folded, FOLD_TIMEOUT)

    def _unread(self, what: str, **extra: Any) -> web.Response:
        # Written, but a read now would not see it: say so rather than claim success.
        message = f"{what} was written but not read back within {FOLD_TIMEOUT:g}s"
        return self._json({"error": message, **extra}, 504)


class DefinitionTooLarge(ValueError):
    """A definition larger than one record of the definitions topic can be."""


def check_sizes(document: Any, kind: str, limit: int) -> None:
    """Refuse, before its content is read, a definition of ``document`` (one or a list)
    that could not fit in one record of ``limit`` bytes."""
    items = document if isinstance(document, list) else [document]
    for index, item in enumerate(items):
        size = len(to_json(item))
        if size > limit:
            name = item.get("id", index) if isinstance(item, dict) else index
            raise DefinitionTooLarge(
                f"{kind} '{name}' is {size} bytes, over the limit of {limit} bytes"
            )
