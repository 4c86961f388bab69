"""Client side of a running system: find it, send NDJSON to it, query it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from pydantic import BaseModel

from engine.codecs import InputCodec
from schemas import Event, Feedback, TagUpdate
from schemas.devices import DeviceUpdate
from streams import runfile
from streams.ingest import IngestProducer
from streams.partitioning import partition_for
from streams.settings import Settings, bootstrap_servers
from streams.ticks import TickDriver
from streams.topics import Topics


class NotRunning(RuntimeError):
    """No running system was found."""


def find_broker(settings: Settings) -> str:
    if settings.broker_url:
        return bootstrap_servers(settings.broker_url)
    info = runfile.read(settings.data_dir)
    if info is None:
        raise NotRunning(
            f"no broker configured (REACH_BROKER_URL) and no system running from "
            f"{settings.data_dir} (start one with `reach up`)"
        )
    return info.broker


def _split(lines: Iterable[bytes]) -> tuple[list[tuple[str, bytes]], list[bytes]]:
    """Lines that are objects with a string user_id get packed; the rest go as they are,
    one record each, for the workers to dead-letter with the reason."""
    packable: list[tuple[str, bytes]] = []
    loose: list[bytes] = []
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            parsed = orjson.loads(line)
        except orjson.JSONDecodeError:
            loose.append(line)
            continue
        user_id = parsed.get("user_id") if isinstance(parsed, dict) else None
        if isinstance(user_id, str):
            packable.append((user_id, line))
        else:
            loose.append(line)
    return packable, loose


@dataclass(frozen=True, slots=True)
class InvalidLine:
    line: int
    """Counted from 1, blank lines included."""
    reason: str
    detail: str


INPUT_MODELS: dict[str, type[BaseModel]] = {
    "events": Event,
    "tags": TagUpdate,
    "feedback": Feedback,
    "devices": DeviceUpdate,
}


def check_lines(
    kind: str, lines: Iterable[bytes], max_record_bytes: int
) -> tuple[list[bytes], list[InvalidLine]]:
    """Validate NDJSON lines with the workers' own codec: (valid lines, invalid ones
    with their line numbers). Blank lines are neither."""
    codec = InputCodec(INPUT_MODELS[kind], max_record_bytes)
    valid: list[bytes] = []
    invalid: list[InvalidLine] = []
    for number, line in enumerate(lines, start=1):
        line = line.strip()
        if not line:
            continue
        rejected = codec.decode(line).rejected
        if not rejected:
            valid.append(line)
            continue
        first = rejected[0]
        where = f"array item {first.index + 1}: " if first.index is not None else ""
        invalid.append(InvalidLine(number, first.reason.value, where + first.detail))
    return valid, invalid


async def send_ndjson(settings: Settings, topic: str, lines: Iterable[bytes]) -> tuple[int, int]:
    """Produce NDJSON lines to ``topic``; returns (items, records)."""
    packable, loose = _split(lines)
    producer = IngestProducer(
        find_broker(settings), settings.max_record_bytes, settings.events_per_record
    )
    await producer.start()
    try:
        records = await producer.send_encoded(topic, packable)
        await producer.send_records(
            topic,
            [
                (partition_for(line.decode("utf-8", "replace"), settings.partitions), line)
                for line in loose
            ],
        )
    finally:
        await producer.stop()
    return len(packable) + len(loose), records + len(loose)


class HttpClient:
    """A small client of the HTTP API, used by the CLI, the demo and the tests."""

    def __init__(self, url: str, api_key: str | None = None) -> None:
        self.url = url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = orjson.dumps(body) if body is not None else None
        async with (
            aiohttp.ClientSession(headers=self._headers) as session,
            session.request(
                method,
                self.url + path,
                data=data,
                # Also on a POST without a body: a keyless API refuses other types.
                headers={"Content-Type": "application/json"} if data or method == "POST" else None,
            ) as response,
        ):
            payload = await response.read()
            return response.status, orjson.loads(payload) if payload else None

    async def query(
        self, sql: str, parameters: dict[str, Any] | None = None
    ) -> tuple[list[str], list[list[Any]]]:
        status, body = await self.call("POST", "/v1/query", {"sql": sql, "parameters": parameters})
        if status != 200 or not isinstance(body, dict) or "error" in body:
            # A streamed answer that failed after its first rows carries "error" last.
            raise RuntimeError(body.get("error") if isinstance(body, dict) else body)
        return body["columns"], body["rows"]

    async def wait_healthy(self, timeout: float) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            try:
                status, _ = await self.call("GET", "/healthz")
                if status == 200:
                    return
            except aiohttp.ClientError:
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{self.url} did not become healthy in {timeout}s")
            await asyncio.sleep(0.1)


def running_api(data_dir: Path) -> str | None:
    info = runfile.read(data_dir)
    return info.http if info else None


async def send_tick(
    settings: Settings, topic: str, now: datetime, wait: bool = False, timeout: float = 120.0
) -> int:
    """Write a clock tick (with its barrier) to every partition of the clock topic
    ``topic``; with ``wait``, return once every partition has applied it. Returns the
    count of partitions."""
    topics = replace(Topics.from_settings(settings), clock=topic)
    async with TickDriver(find_broker(settings), topics) as driver:
        ticked = await driver.tick(now, wait=wait, timeout=timeout)
    return ticked.partitions
