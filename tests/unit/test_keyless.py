"""Keyless mode (no REACH_API_KEYS, loopback only) and the browser: a web page may send
requests to the API but must not get them through. Its simple requests carry form or
text content types; a DNS-rebinding page sends its own host name in ``Host``; a
cross-site request carries its ``Origin``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import cast

import pytest
from aiohttp.test_utils import TestClient, TestServer

from api.server import HttpApi
from streams.engine import Engine
from streams.ingest import IngestProducer
from streams.settings import Settings
from tests.unit.test_journey_routes import FoldingProducer

EVENT = b'[{"user_id": "u", "name": "E", "timestamp": 1700000000000}]'


async def _client(api_keys: str) -> TestClient:
    engine = Engine.from_settings(Settings(api_keys=api_keys), "127.0.0.1:1")
    engine.definitions.ready.set()
    http = HttpApi(engine)
    http._producer = cast(IngestProducer, FoldingProducer(engine))
    return TestClient(TestServer(http.build(), host="127.0.0.1"))


@pytest.fixture
async def keyless() -> AsyncIterator[TestClient]:
    async with await _client("") as client:
        yield client


def _host(client: TestClient, name: str = "127.0.0.1") -> str:
    return f"{name}:{client.port}"


@pytest.mark.parametrize("name", ["127.0.0.1", "localhost", "[::1]"])
async def test_loopback_hosts_with_json_are_served(keyless: TestClient, name: str) -> None:
    headers = {"Host": _host(keyless, name), "Content-Type": "application/json"}
    response = await keyless.post("/v1/events", data=EVENT, headers=headers)
    assert response.status == 200, await response.text()
    ndjson = {**headers, "Content-Type": "application/x-ndjson"}
    response = await keyless.post("/v1/events", data=EVENT[1:-1], headers=ndjson)
    assert response.status == 200, await response.text()
    assert (await keyless.get("/v1/segments", headers={"Host": _host(keyless, name)})).status == 200


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None],
)
async def test_post_without_a_json_content_type_is_refused(
    keyless: TestClient, content_type: str | None
) -> None:
    headers = {"Host": _host(keyless)}
    if content_type:
        headers["Content-Type"] = content_type
    response = await keyless.post("/v1/query", data=b'{"sql": "SELECT 1"}', headers=headers)
    assert response.status == 415
    assert "application/json" in (await response.json())["error"]


@pytest.mark.parametrize(
    "host", ["attacker.example", "attacker.example:{port}", "127.0.0.1:1", "localhost.evil:{port}"]
)
async def test_a_foreign_host_is_refused(keyless: TestClient, host: str) -> None:
    headers = {"Host": host.format(port=keyless.port), "Content-Type": "application/json"}
    response = await keyless.post("/v1/events", data=EVENT, headers=headers)
    assert response.status == 403
    assert "Host" in (await response.json())["error"]
    assert (await keyless.get("/v1/status", headers={"Host": headers["Host"]})).status == 403


@pytest.mark.parametrize("origin", ["https://attacker.example", "null", "http://127.0.0.1:1"])
async def test_a_foreign_origin_is_refused(keyless: TestClient, origin: str) -> None:
    headers = {"Host": _host(keyless), "Origin": origin, "Content-Type": "application/json"}
    response = await keyless.post("/v1/events", data=EVENT, headers=headers)
    assert response.status == 403
    assert "Origin" in (await response.json())["error"]


async def test_the_apis_own_origin_is_served(keyless: TestClient) -> None:
    headers = {
        "Host": _host(keyless),
        "Origin": f"http://{_host(keyless, 'localhost')}",
        "Content-Type": "application/json",
    }
    assert (await keyless.post("/v1/events", data=EVENT, headers=headers)).status == 200


async def test_with_keys_the_key_is_the_check() -> None:
    async with await _client("keyed-admin-key-0123456789:admin") as client:
        headers = {
            "Host": "api.example.com",
            "Authorization": "Bearer keyed-admin-key-0123456789",
            "Content-Type": "application/json",
        }
        assert (await client.post("/v1/events", data=EVENT, headers=headers)).status == 200


async def test_tracking_links_are_not_fenced(keyless: TestClient) -> None:
    # Mail clients follow them from anywhere; a signed token is their check.
    response = await keyless.get("/t/o/not-a-token", headers={"Host": "mail.example"})
    assert response.status != 403
