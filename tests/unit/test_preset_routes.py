"""The preset routes of the HTTP API on aiohttp's test server, with the real route
table and scopes and no broker: definition records are folded as if read back from
the topic (see tests/unit/test_journey_routes.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from api.server import HttpApi
from files import segments as segment_files
from files.journeys import read
from schemas.definitions import PresetApplied, PresetDeleted
from schemas.values import parse_timestamp
from streams.engine import Engine
from streams.ingest import IngestProducer
from streams.settings import Settings
from tests.unit.test_journey_routes import ADMIN, INGEST, READ, Api, FoldingProducer

EXAMPLES = Path(__file__).parents[2] / "examples"
PRESETS: list[dict[str, Any]] = orjson.loads(orjson.dumps(read(EXAMPLES / "seed-presets.yaml")))
JOURNEYS: list[dict[str, Any]] = orjson.loads(orjson.dumps(read(EXAMPLES / "seed-journeys.yaml")))
SMS = {"id": "hello", "name": "Hello", "channel": "sms", "content": {"text": "Hi {{tag.Name}}"}}


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    settings = Settings(
        api_keys=(
            f"{ADMIN['Authorization'][7:]}:admin,{READ['Authorization'][7:]}:read,"
            f"{INGEST['Authorization'][7:]}:ingest"
        ),
        clock="simulated",
        max_record_bytes=8192,
    )
    engine = Engine.from_settings(settings, "127.0.0.1:1")
    engine.clock.advance(parse_timestamp("2026-11-01T09:00:00Z"))
    registry = engine.definitions.registry
    for segment in segment_files.load(EXAMPLES / "seed-segments.yaml"):
        registry.fold(registry.prepare(segment, datetime(2026, 10, 1, tzinfo=UTC)))
    engine.definitions.ready.set()
    producer = FoldingProducer(engine)
    http = HttpApi(engine)
    http._producer = cast(IngestProducer, producer)
    async with TestClient(TestServer(http.build())) as client:
        yield Api(client, engine, producer, http.projections)


async def test_presets_first_then_journeys(api: Api) -> None:
    status, body = await api.call("POST", "/v1/journeys", JOURNEYS[0])
    assert status == 400
    assert "uses unknown preset 'we-miss-you' (node 'first-email')" in body["error"]

    status, body = await api.call("POST", "/v1/presets", PRESETS)
    assert status == 200, body
    assert body["applied"] == [{"id": item["id"], "version": 1} for item in PRESETS]
    assert [key for _, key, _ in api.producer.keyed] == [
        f"preset:{item['id']}".encode() for item in PRESETS
    ]
    status, body = await api.call("POST", "/v1/journeys", JOURNEYS)
    assert status == 200, body


async def test_list_show_and_new_versions(api: Api) -> None:
    await api.call("POST", "/v1/presets", PRESETS)
    status, body = await api.call("POST", "/v1/presets", {**PRESETS[0], "name": "Miss you"})
    assert (status, body) == (200, {"applied": [{"id": "we-miss-you", "version": 2}]})
    status, body = await api.call("GET", "/v1/presets", headers=READ)
    assert status == 200
    listed = {item["id"]: item for item in body["presets"]}
    assert list(listed) == sorted(item["id"] for item in PRESETS)
    assert listed["we-miss-you"] == {
        "id": "we-miss-you",
        "name": "Miss you",
        "channel": "email",
        "version": 2,
        "default_language": "en",
        "languages": ["hi", "pt"],
    }
    await api.call("POST", "/v1/journeys", JOURNEYS[0])
    status, body = await api.call("GET", "/v1/presets/we-miss-you", headers=READ)
    assert (status, body["used_by"], body["version"]) == (200, ["reengage-once"], 2)
    assert body["definition"]["variants"]["hi"]["channel"] == "email"
    # What show gives can be applied again.
    status, body = await api.call("POST", "/v1/presets", body["definition"])
    assert (status, body["applied"]) == (200, [{"id": "we-miss-you", "version": 3}])
    assert await api.call("GET", "/v1/presets/nope", headers=READ) == (
        404,
        {"error": "no preset 'nope'"},
    )


async def test_invalid_presets_refuse_the_whole_apply_naming_the_field(api: Api) -> None:
    broken = {**SMS, "id": "broken", "variants": {"pt": {"text": "Olá {{tag.Nome"}}}
    status, body = await api.call("POST", "/v1/presets", [SMS, broken])
    assert status == 400
    assert body["error"] == (
        "preset 'broken': variants.pt.text: '{{' at character 5 is not closed with '}}'"
    )
    assert api.producer.keyed == []
    response = await api.client.post("/v1/presets", data=b"{", headers=ADMIN)
    assert response.status == 400
    big = {
        **SMS,
        "id": "big",
        "variants": {code: {"text": "x" * 1500} for code in ("pt", "hi", "fr", "de", "es", "it")},
    }
    status, body = await api.call("POST", "/v1/presets", big)
    assert status == 413
    assert "over the limit of 8192 bytes" in body["error"]
    assert api.producer.keyed == []


async def test_delete_is_refused_while_a_journey_may_send_it(api: Api) -> None:
    await api.call("POST", "/v1/presets", PRESETS)
    await api.call("POST", "/v1/journeys", JOURNEYS[0])
    path = "/v1/presets/we-miss-you"
    status, body = await api.call("DELETE", path)
    assert (status, body["error"]) == (
        409,
        "preset 'we-miss-you' is used by journey reengage-once: change or stop those first",
    )
    email_as_sms = {**SMS, "id": "we-miss-you"}
    status, body = await api.call("POST", "/v1/presets", email_as_sms)
    assert status == 409
    assert body["error"] == (
        "preset 'we-miss-you' is sent on email by journey reengage-once: it cannot become sms"
    )
    for action in ("launch", "stop"):
        assert (await api.call("POST", f"/v1/journeys/reengage-once/{action}"))[0] == 200
    assert await api.call("DELETE", path) == (200, {"deleted": "we-miss-you", "version": 2})
    assert (await api.call("GET", path))[0] == 404
    assert (await api.call("DELETE", path))[0] == 404
    _, key, value = api.producer.keyed[-1]
    assert key == b"preset:we-miss-you"
    assert PresetDeleted.model_validate_json(value).version == 2
    status, body = await api.call("POST", "/v1/journeys/reengage-once/launch")
    assert status == 409
    assert "unknown preset 'we-miss-you'" in body["error"]
    # Re-created, with the next version.
    assert (await api.call("POST", "/v1/presets", PRESETS[0]))[1]["applied"][0]["version"] == 3


async def test_render_previews_a_users_content(api: Api) -> None:
    await api.call("POST", "/v1/presets", PRESETS)
    body = {
        "tags": {"Language": "pt-BR", "First Name": "Ana"},
        "properties": {"flight": "TP 1234"},
        "user_id": "u1",
    }
    status, answer = await api.call(
        "POST", "/v1/presets/flight-changed-push/render", body, headers=READ
    )
    assert status == 200, answer
    assert answer == {
        "preset_id": "flight-changed-push",
        "version": 1,
        "channel": "push",
        "language": "pt",
        "content": {
            "channel": "push",
            "title": "Voo alterado: TP 1234",
            "body": "Nova hora de partida: veja na app. Toque para ver os detalhes.",
            "deep_link": "reach://trips/latest",
            "image": None,
            "badge": None,
            "sound": None,
            "data": {},
            "collapse_id": None,
            "ttl_seconds": None,
            "priority": "high",
        },
    }
    await api.call("POST", "/v1/presets", SMS)
    status, answer = await api.call("POST", "/v1/presets/hello/render", {}, headers=READ)
    assert status == 422
    assert answer["error"] == "text: no value for {{tag.Name}} and no default"
    assert answer["missing"] == ["tag.Name"]
    status, answer = await api.call("POST", "/v1/presets/hello/render", None, headers=READ)
    assert status == 422  # no body at all: no tags


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ([], "expected an object"),
        ({"tags": []}, "tags and properties are objects"),
        ({"user_id": 7}, "user_id is a string"),
        ({"language": "pt"}, "unknown fields language"),
    ],
)
async def test_render_refuses_bad_bodies(api: Api, body: Any, problem: str) -> None:
    await api.call("POST", "/v1/presets", SMS)
    status, answer = await api.call("POST", "/v1/presets/hello/render", body, headers=READ)
    assert status == 400
    assert answer["error"].startswith('body must be {"tags"')
    assert problem in answer["error"]
    assert (await api.call("POST", "/v1/presets/nope/render", {}, headers=READ))[0] == 404


async def test_scopes(api: Api) -> None:
    await api.call("POST", "/v1/presets", SMS)
    for method, path, key, allowed in [
        ("POST", "/v1/presets", READ, False),
        ("DELETE", "/v1/presets/hello", READ, False),
        ("DELETE", "/v1/presets/hello", INGEST, False),
        ("GET", "/v1/presets", READ, True),
        ("GET", "/v1/presets/hello", READ, True),
        ("GET", "/v1/presets", INGEST, False),
        ("POST", "/v1/presets/hello/render", READ, True),
        ("POST", "/v1/presets/hello/render", {}, False),
    ]:
        body = SMS if method == "POST" and path == "/v1/presets" else None
        status, _ = await api.call(method, path, body, headers=key)
        assert (status != 401) is allowed, (method, path, key)
    applied = [PresetApplied.model_validate_json(v) for _, k, v in api.producer.keyed]
    assert [event.definition.id for event in applied] == ["hello"]


async def test_a_push_preset_over_the_providers_limit_is_refused_at_apply(api: Api) -> None:
    big = {
        "id": "big-push",
        "name": "Big",
        "channel": "push",
        "content": {"title": "Hi", "body": "é" * 2100},
    }
    status, body = await api.call("POST", "/v1/presets", [SMS, big])
    assert status == 400
    assert body["error"].startswith("preset 'big-push': content: the APNs payload is 42")
    assert "over APNs' limit of 4096" in body["error"]
    assert api.producer.keyed == []
