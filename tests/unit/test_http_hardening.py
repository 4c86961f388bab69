"""The HTTP API against hostile or sloppy clients, on a real loopback socket with the
real route table, scopes and server settings (no broker: produced records are kept):
API key headers, numbers JSON cannot carry, NDJSON bodies with bad lines, and clients
that send their request slowly."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any, cast

import orjson
import pytest
from aiohttp import ClientSession, web

from api.server import HttpApi
from streams.engine import Engine
from streams.ingest import IngestProducer
from streams.settings import Settings

ADMIN_KEY = "admin-key-0123456789"
INGEST_KEY = "ingest-key-012345678"
GOOD = {"user_id": "u1", "name": "Open", "timestamp": "2026-11-01T09:00:00Z"}


@dataclass
class KeptProducer:
    records: list[tuple[str, str, bytes]] = field(default_factory=list)

    async def send_encoded(self, topic: str, items: Iterable[tuple[str, bytes]]) -> int:
        self.records.extend((topic, user, value) for user, value in items)
        return 1

    def items(self) -> list[dict[str, Any]]:
        return [orjson.loads(value) for _, _, value in self.records]


@dataclass
class Served:
    url: str
    port: int
    producer: KeptProducer
    session: ClientSession

    async def post(
        self, path: str, body: bytes, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        sent = {"Authorization": f"Bearer {INGEST_KEY}", **(headers or {})}
        async with self.session.post(self.url + path, data=body, headers=sent) as response:
            return response.status, await response.json()

    async def raw(self, request: bytes) -> bytes:
        """Send bytes as they are; the status line of the answer."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(request)
            await writer.drain()
            return await asyncio.wait_for(reader.readline(), 5)
        finally:
            writer.close()


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    settings = Settings(
        api_keys=f"{ADMIN_KEY}:admin,{INGEST_KEY}:ingest",
        http_header_timeout=0.5,
        http_body_timeout=0.5,
    )
    engine = Engine.from_settings(settings, "127.0.0.1:1")
    producer = KeptProducer()
    http = HttpApi(engine)
    http._producer = cast(IngestProducer, producer)
    runner = http.runner()
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    async with ClientSession() as session:
        yield Served(f"http://127.0.0.1:{port}", port, producer, session)
    await runner.cleanup()


# --- API keys -------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
async def test_the_bearer_scheme_is_case_insensitive(served: Served, scheme: str) -> None:
    status, body = await served.post(
        "/v1/events", orjson.dumps([GOOD]), {"Authorization": f"{scheme} {INGEST_KEY}"}
    )
    assert (status, body["accepted"]) == (200, 1)


@pytest.mark.parametrize("header", ["Basic " + INGEST_KEY, INGEST_KEY, "Bearer", "Bearer x"])
async def test_other_schemes_and_wrong_keys_are_401(served: Served, header: str) -> None:
    status, _ = await served.post("/v1/events", orjson.dumps([GOOD]), {"Authorization": header})
    assert status == 401


async def test_a_non_utf8_authorization_header_is_401(served: Served) -> None:
    status = await served.raw(
        b"GET /v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Authorization: Bearer \xff\xfe-not-utf-8\r\nConnection: close\r\n\r\n"
    )
    assert status.startswith(b"HTTP/1.1 401"), status


# --- values JSON cannot carry -----------------------------------------------------------


async def test_nan_and_infinity_are_refused_per_item(served: Served) -> None:
    body = (
        b'[{"user_id": "u1", "name": "Open", "timestamp": "2026-11-01T09:00:00Z",'
        b' "attributes": {"score": NaN}},'
        b' {"user_id": "u2", "name": "Open", "timestamp": "2026-11-01T09:00:00Z"},'
        b' {"user_id": "u3", "name": "Open", "timestamp": "2026-11-01T09:00:00Z",'
        b' "attributes": {"score": -Infinity}}]'
    )
    status, answer = await served.post("/v1/events", body)
    assert status == 400, answer
    assert [error["index"] for error in answer["errors"]] == [0, 2]
    assert served.producer.records == []
    tags = b'{"user_id": "u1", "tags": {"Score": Infinity}, "timestamp": "2026-11-01T09:00:00Z"}'
    status, answer = await served.post("/v1/tags", tags)
    assert status == 400, answer
    status, answer = await served.post("/v1/events?partial=true", body)
    assert (status, answer["accepted"]) == (200, 1)
    assert [item["user_id"] for item in served.producer.items()] == ["u2"]


# --- NDJSON ---------------------------------------------------------------------------

NDJSON = {"Content-Type": "application/x-ndjson"}


def _line(user: str) -> bytes:
    return orjson.dumps({**GOOD, "user_id": user})


async def test_ndjson_errors_name_the_line(served: Served) -> None:
    body = b"\n".join(
        [_line("u1"), b"", _line("u2"), b"{not json", b"   ", b'{"user_id": "u3"}', _line("u4")]
    )
    status, answer = await served.post("/v1/events", body, NDJSON)
    assert status == 400, answer
    assert [(error["line"], error["reason"]) for error in answer["errors"]] == [
        (4, "not_json"),
        (6, "missing_field"),
    ]
    assert served.producer.records == []


async def test_partial_rescues_the_good_lines_of_ndjson(served: Served) -> None:
    body = b"\n".join([_line("u1"), b"{not json", b"[1, 2", _line("u2"), b""])
    status, answer = await served.post("/v1/events?partial=true", body, NDJSON)
    assert status == 200, answer
    assert answer["accepted"] == 2
    assert [error["line"] for error in answer["errors"]] == [2, 3]
    assert [item["user_id"] for item in served.producer.items()] == ["u1", "u2"]


# --- slow clients ---------------------------------------------------------------------


async def test_a_client_that_never_finishes_its_headers_is_cut_off(served: Served) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    started = time.perf_counter()
    writer.write(b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    await writer.drain()
    try:
        for _ in range(20):  # a header line now and then, never the blank line
            await asyncio.sleep(0.1)
            writer.write(b"X-Slow: 1\r\n")
            await writer.drain()
        closed = await asyncio.wait_for(reader.read(), 5)
    except ConnectionError:
        closed = b""
    finally:
        writer.close()
    assert closed == b"" or closed.startswith(b"HTTP/1.1 408")
    assert time.perf_counter() - started < 1.5


async def test_a_body_that_does_not_arrive_in_time_is_408(served: Served) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    started = time.perf_counter()
    writer.write(
        b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + f"Authorization: Bearer {INGEST_KEY}\r\n".encode()
        + b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n[{"
    )
    await writer.drain()
    try:
        status = await asyncio.wait_for(reader.readline(), 5)
    finally:
        writer.close()
    assert status.startswith(b"HTTP/1.1 408"), status
    assert time.perf_counter() - started < 1.5
    assert served.producer.records == []
