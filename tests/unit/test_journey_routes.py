"""The journey routes of the HTTP API, served by aiohttp's test server with the real
route table and scopes, without a broker: definition records are folded into the
registry by the real ``DefinitionsService`` as if read back from the topic, and
entries are kept as the records the ingest producer would send."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import ValidationError

from api.server import HttpApi
from files import presets as preset_files
from files import segments as segment_files
from files.journeys import read
from projections.store import Projections
from schemas.commands import JourneyEntryRequest
from schemas.definitions import JourneyStatusChanged
from schemas.journeys import MAX_NODES, JourneyDefinition
from schemas.values import parse_timestamp
from streams.clock import Clock
from streams.engine import Engine
from streams.ingest import IngestProducer
from streams.partitioning import pack, partition_for
from streams.settings import Settings

EXAMPLES = Path(__file__).parents[2] / "examples"
# As written (dates as text), the way `reach journeys apply` sends them.
JOURNEYS: list[dict[str, Any]] = orjson.loads(orjson.dumps(read(EXAMPLES / "seed-journeys.yaml")))
API_JOURNEY = "follow-up-email-sms-whatsapp"
ADMIN = {"Authorization": "Bearer admin-key-0123456789"}
READ = {"Authorization": "Bearer read-key-01234567890"}
INGEST = {"Authorization": "Bearer ingest-key-012345678"}
PARTITIONS = 4


@dataclass
class FoldingProducer:
    """The API's producer, minus Kafka: a definition record is folded as the
    definitions service folds what it reads; other records are packed and kept."""

    engine: Engine
    keyed: list[tuple[str, bytes, bytes]] = field(default_factory=list)
    records: list[tuple[str, int, bytes]] = field(default_factory=list)

    async def send_keyed(self, topic: str, key: bytes, value: bytes) -> None:
        self.keyed.append((topic, key, value))
        await self.engine.definitions._fold(value, len(self.keyed) - 1)

    async def send_encoded(self, topic: str, items: Iterable[tuple[str, bytes]]) -> int:
        records = pack(items, PARTITIONS, 500, self.engine.settings.max_record_bytes)
        self.records.extend((topic, partition, value) for partition, value in records)
        return len(records)


@dataclass
class Api:
    client: TestClient[Any, Any]
    engine: Engine
    producer: FoldingProducer
    projections: Projections

    async def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] = ADMIN
    ) -> tuple[int, Any]:
        response = await self.client.request(method, path, json=body, headers=headers)
        return response.status, await response.json()


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    settings = Settings(
        api_keys=(
            f"{ADMIN['Authorization'][7:]}:admin,{READ['Authorization'][7:]}:read,"
            f"{INGEST['Authorization'][7:]}:ingest"
        ),
        clock="simulated",
        max_batch_items=3,
        max_record_bytes=2048,
    )
    engine = Engine.from_settings(settings, "127.0.0.1:1")
    engine.clock.advance(parse_timestamp("2026-11-01T09:00:00Z"))
    registry = engine.definitions.registry
    for segment in segment_files.load(EXAMPLES / "seed-segments.yaml"):
        registry.fold(registry.prepare(segment, datetime(2026, 10, 1, tzinfo=UTC)))
    for preset in preset_files.load(EXAMPLES / "seed-presets.yaml"):
        registry.fold(registry.prepare_preset(preset, datetime(2026, 10, 1, tzinfo=UTC)))
    engine.definitions.ready.set()
    producer = FoldingProducer(engine)
    http = HttpApi(engine)
    http._producer = cast(IngestProducer, producer)
    async with TestClient(TestServer(http.build())) as client:
        yield Api(client, engine, producer, http.projections)


async def test_apply_versions_list_and_show(api: Api) -> None:
    status, body = await api.call("POST", "/v1/journeys", JOURNEYS)
    assert status == 200, body
    assert body["applied"] == [{"id": item["id"], "version": 1} for item in JOURNEYS]
    # One record each, keyed by journey and version, on the definitions topic.
    assert [key for _, key, _ in api.producer.keyed] == [
        f"journey:{item['id']}:1".encode() for item in JOURNEYS
    ]
    changed = {**JOURNEYS[0], "name": "Come back, please"}
    status, body = await api.call("POST", "/v1/journeys", changed)
    assert (status, body) == (200, {"applied": [{"id": "reengage-once", "version": 2}]})

    status, body = await api.call("GET", "/v1/journeys", headers=READ)
    assert status == 200
    listed = {journey["id"]: journey for journey in body["journeys"]}
    assert list(listed) == sorted(item["id"] for item in JOURNEYS)
    assert listed["reengage-once"] == {
        "id": "reengage-once",
        "name": "Come back, please",
        "status": "draft",
        "launch": 0,
        "launched_at": None,
        "stopped_at": None,
        "version": 2,
        "entries": ["audience inactive-7d (once 2026-12-10 09:00 Europe/Paris)"],
    }
    assert listed["reengage-weekly"]["entries"] == [
        "audience inactive-7d (every 1 weeks on fri at 17:00 user)"
    ]
    assert listed["follow-up-push-whatsapp"]["entries"] == ["trigger CartAbandoned (filtered)"]
    assert listed["follow-up-email-sms"]["entries"] == ["audience lapsed-portuguese (at launch)"]
    assert listed[API_JOURNEY]["entries"] == ["api"]

    status, body = await api.call("GET", "/v1/journeys/reengage-once", headers=READ)
    assert status == 200
    assert (body["version"], body["versions"], body["status"]) == (2, [1, 2], "draft")
    definition = body["definition"]
    assert (definition["id"], definition["name"], definition["version"]) == (
        "reengage-once",
        "Come back, please",
        2,
    )
    assert [node["id"] for node in definition["nodes"]] == ["first-email", "second-email", "done"]
    status, body = await api.call("GET", "/v1/journeys/reengage-once?version=1", headers=READ)
    assert (status, body["version"], body["definition"]["name"]) == (200, 1, "Come back (once)")


@pytest.mark.parametrize(
    ("query", "status", "message"),
    [
        ("?version=3", 404, "journey 'reengage-once' has no version 3 (versions: 1)"),
        ("?version=one", 400, "version must be a whole number, not 'one'"),
    ],
)
async def test_show_refuses_unknown_versions(
    api: Api, query: str, status: int, message: str
) -> None:
    await api.call("POST", "/v1/journeys", JOURNEYS[0])
    assert await api.call("GET", f"/v1/journeys/reengage-once{query}") == (
        status,
        {"error": message},
    )


async def test_unknown_segments_refuse_the_whole_apply(api: Api) -> None:
    unknown = {
        **JOURNEYS[0],
        "id": "ghost",
        "entries": [{"kind": "audience", "segment": "ghost-segment"}],
    }
    status, body = await api.call("POST", "/v1/journeys", [JOURNEYS[1], unknown])
    assert status == 400
    assert body == {"error": "journey 'ghost' uses unknown segment 'ghost-segment'"}
    assert api.producer.keyed == []  # nothing written, not even the valid one


async def test_unknown_presets_and_other_channels_refuse_the_whole_apply(api: Api) -> None:
    wrong = orjson.loads(orjson.dumps(JOURNEYS[0]))
    wrong["id"] = "wrong"
    wrong["nodes"][0]["preset"] = "ghost-preset"
    wrong["nodes"][1]["preset"] = "offer-sms"
    status, body = await api.call("POST", "/v1/journeys", [JOURNEYS[1], wrong])
    assert status == 400
    assert body == {
        "error": "journey 'wrong' uses unknown preset 'ghost-preset' (node 'first-email'); "
        "journey 'wrong': node 'second-email' sends on email but preset 'offer-sms' is for sms"
    }
    assert api.producer.keyed == []


async def test_invalid_definitions_say_where(api: Api) -> None:
    broken = orjson.loads(orjson.dumps(JOURNEYS[0]))
    broken["nodes"][1]["channel"] = "fax"
    status, body = await api.call("POST", "/v1/journeys", broken)
    assert status == 400
    assert body["error"].startswith("journey 'reengage-once': node 'second-email', channel: ")
    response = await api.client.post("/v1/journeys", data=b"{", headers=ADMIN)
    assert response.status == 400
    assert (await response.json())["error"].startswith("body is not JSON")


async def test_the_lifecycle_and_its_refusals(api: Api) -> None:
    await api.call("POST", "/v1/journeys", JOURNEYS[0])
    path = "/v1/journeys/reengage-once"
    assert await api.call("POST", f"{path}/pause") == (
        409,
        {
            "error": "journey 'reengage-once' is draft: it cannot pause (only when launched)",
        },
    )
    status, body = await api.call("POST", f"{path}/launch")
    assert status == 200
    assert body == {
        "id": "reengage-once",
        "name": "Come back (once)",
        "status": "launched",
        "launch": 1,
        "launched_at": "2026-11-01T09:00:00+00:00",
        "stopped_at": None,
        "action": "launch",
    }
    assert (await api.call("POST", f"{path}/launch"))[0] == 409
    for action, state in (("pause", "paused"), ("resume", "launched"), ("stop", "stopped")):
        status, body = await api.call("POST", f"{path}/{action}")
        assert (status, body["status"], body["action"]) == (200, state, action)
    assert (await api.call("POST", f"{path}/resume"))[0] == 409
    api.engine.clock.advance(parse_timestamp("2026-11-02T09:00:00Z"))
    status, body = await api.call("POST", f"{path}/launch")
    assert (status, body["launch"], body["launched_at"]) == (200, 2, "2026-11-02T09:00:00+00:00")
    status, body = await api.call("POST", f"{path}/rename", {"name": "  Welcome back  "})
    assert (status, body["name"], body["status"]) == (200, "Welcome back", "launched")
    assert (await api.call("GET", path))[1]["name"] == "Welcome back"

    # Each change is the whole lifecycle, on the journey's status key.
    statuses = [
        JourneyStatusChanged.model_validate_json(value)
        for _, key, value in api.producer.keyed
        if key == b"journey-status:reengage-once"
    ]
    assert [(s.action, s.status, s.launch) for s in statuses] == [
        ("launch", "launched", 1),
        ("pause", "paused", 1),
        ("resume", "launched", 1),
        ("stop", "stopped", 1),
        ("launch", "launched", 2),
        ("rename", "launched", 2),
    ]


@pytest.mark.parametrize("body", [{}, {"name": ""}, {"name": 7}, ["x"], {"name": "x" * 257}])
async def test_rename_needs_a_name(api: Api, body: Any) -> None:
    await api.call("POST", "/v1/journeys", JOURNEYS[0])
    status, answer = await api.call("POST", "/v1/journeys/reengage-once/rename", body)
    assert status == 400
    assert "name" in answer["error"]


@pytest.mark.parametrize(
    ("method", "suffix"),
    [
        ("GET", ""),
        ("GET", "/stats"),
        ("POST", "/launch"),
        ("POST", "/stop"),
        ("POST", "/entries"),
    ],
)
async def test_unknown_journeys_are_404(api: Api, method: str, suffix: str) -> None:
    body = {"users": [{"user_id": "u1"}]} if suffix == "/entries" else None
    assert await api.call(method, f"/v1/journeys/nobody{suffix}", body) == (
        404,
        {"error": "no journey 'nobody'"},
    )


async def test_scopes(api: Api) -> None:
    await api.call("POST", "/v1/journeys", JOURNEYS)
    await api.call("POST", f"/v1/journeys/{API_JOURNEY}/launch")
    entries = {"users": [{"user_id": "u1"}]}
    for method, path, body, key, allowed in [
        ("POST", "/v1/journeys", JOURNEYS[0], READ, False),
        ("POST", "/v1/journeys", JOURNEYS[0], INGEST, False),
        ("POST", f"/v1/journeys/{API_JOURNEY}/pause", None, READ, False),
        ("GET", "/v1/journeys", None, READ, True),
        ("GET", "/v1/journeys", None, INGEST, False),
        ("GET", f"/v1/journeys/{API_JOURNEY}", None, READ, True),
        ("POST", f"/v1/journeys/{API_JOURNEY}/entries", entries, READ, False),
        ("POST", f"/v1/journeys/{API_JOURNEY}/entries", entries, INGEST, True),
        ("GET", "/v1/journeys", None, {}, False),
    ]:
        status, _ = await api.call(method, path, body, headers=key)
        assert (status != 401) is allowed, (method, path, key)


async def test_api_entries_are_packed_by_user_partition(api: Api) -> None:
    await api.call("POST", "/v1/journeys", JOURNEYS)
    path = f"/v1/journeys/{API_JOURNEY}"
    users = {"users": [{"user_id": "u1", "properties": {"plan": "gold"}}, {"user_id": "u2"}]}
    status, body = await api.call("POST", f"{path}/entries", users, headers=INGEST)
    assert status == 409
    assert body["error"] == f"journey '{API_JOURNEY}' is draft: users enter only when launched"

    await api.call("POST", f"{path}/launch")
    users["users"].append({"user_id": "u3", "entry_id": "renewal-2026-u3"})
    status, body = await api.call("POST", f"{path}/entries", users, headers=INGEST)
    assert status == 200, body
    assert body["accepted"] == 3
    assert body["entry_ids"][2] == "renewal-2026-u3"
    at = parse_timestamp("2026-11-01T09:00:00Z")
    sent: dict[str, JourneyEntryRequest] = {}
    for topic, partition, value in api.producer.records:
        assert topic == api.engine.topics.journey_entries
        for item in orjson.loads(value):  # a JSON array of one partition's users
            entry = JourneyEntryRequest.model_validate(item)
            assert partition == partition_for(entry.user_id, PARTITIONS)
            sent[entry.user_id] = entry
    assert sorted(sent) == ["u1", "u2", "u3"]
    assert sent["u1"].properties == {"plan": "gold"}
    assert {entry.journey_id for entry in sent.values()} == {API_JOURNEY}
    assert {entry.at for entry in sent.values()} == {at}
    assert [sent[user].entry_id for user in ("u1", "u2", "u3")] == body["entry_ids"]


async def test_api_entries_need_an_api_entry(api: Api) -> None:
    await api.call("POST", "/v1/journeys", JOURNEYS)
    await api.call("POST", "/v1/journeys/follow-up-push-email/launch")
    status, body = await api.call(
        "POST",
        "/v1/journeys/follow-up-push-email/entries",
        {"users": [{"user_id": "u1"}]},
        headers=INGEST,
    )
    assert status == 409
    assert "has no api entry" in body["error"]
    assert api.producer.records == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"users": "u1"}, 'body must be {"users"'),
        ([{"user_id": "u1"}], 'body must be {"users"'),
        ({"users": [{"user_id": str(n)} for n in range(4)]}, "4 users, over the limit of 3"),
    ],
)
async def test_api_entries_refuse_bad_bodies(api: Api, body: Any, message: str) -> None:
    await api.call("POST", "/v1/journeys", JOURNEYS)
    await api.call("POST", f"/v1/journeys/{API_JOURNEY}/launch")
    status, answer = await api.call(
        "POST", f"/v1/journeys/{API_JOURNEY}/entries", body, headers=INGEST
    )
    assert status == 400
    assert message in answer["error"]


async def test_api_entries_refuse_the_batch_listing_bad_items(api: Api) -> None:
    await api.call("POST", "/v1/journeys", JOURNEYS)
    await api.call("POST", f"/v1/journeys/{API_JOURNEY}/launch")
    users = [
        {"user_id": "u1"},
        {"user_id": "u2", "at": "2026-01-01T00:00:00Z"},
        {"properties": {}},
    ]
    status, body = await api.call(
        "POST", f"/v1/journeys/{API_JOURNEY}/entries", {"users": users}, headers=INGEST
    )
    assert status == 400
    assert body["accepted"] == 0
    assert [(error["index"], error["detail"]) for error in body["errors"]] == [
        (1, "unknown fields at (allowed: user_id, properties, entry_id)"),
        (2, "user_id: Field required"),
    ]
    status, body = await api.call(
        "POST",
        f"/v1/journeys/{API_JOURNEY}/entries",
        {"users": [{"user_id": "u1", "properties": {"blob": "x" * 3000}}]},
        headers=INGEST,
    )
    assert status == 400
    assert "over the limit of 2048" in body["errors"][0]["detail"]
    assert api.producer.records == []


async def test_stats(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    stats_module = pytest.importorskip("projections.journey_stats")
    await api.call("POST", "/v1/journeys", JOURNEYS[0])
    path = "/v1/journeys/reengage-once/stats"
    assert await api.call("GET", path, headers=READ) == (
        503,
        {"error": "ClickHouse is not open yet"},
    )
    asked: list[tuple[Any, str]] = []

    def journey_stats(client: Any, journey_id: str) -> dict[str, Any]:
        asked.append((client, journey_id))
        return {"journey_id": journey_id, "journey": {"entered": 0}, "steps": []}

    monkeypatch.setattr(stats_module, "journey_stats", journey_stats)
    api.projections.client = cast(Any, "the-client")
    status, body = await api.call("GET", path, headers=READ)
    assert (status, body["journey_id"]) == (200, "reengage-once")
    assert asked == [("the-client", "reengage-once")]


async def test_stats_report_the_derived_status(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    stats_module = pytest.importorskip("projections.journey_stats")
    await api.call("POST", "/v1/journeys", JOURNEYS[0])
    await api.call("POST", "/v1/journeys/reengage-once/launch")
    inside = {"now": 2}

    def journey_stats(client: Any, journey_id: str) -> dict[str, Any]:
        totals = {"entries": 5, "inside_now": inside["now"]}
        return {"journey_id": journey_id, "journey": totals, "steps": []}

    monkeypatch.setattr(stats_module, "journey_stats", journey_stats)
    api.projections.client = cast(Any, "the-client")
    path = "/v1/journeys/reengage-once/stats"
    api.engine.clock.advance(parse_timestamp("2026-12-16T00:00:00Z"))  # the run came due
    status, body = await api.call("GET", path, headers=READ)
    assert (status, body["status"], body["journey"]["inside_now"]) == (200, "launched", 2)
    inside["now"] = 0
    assert (await api.call("GET", path, headers=READ))[1]["status"] == "finished"


async def test_a_launched_journey_finishes_when_its_entries_are_over_and_nobody_is_inside(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    stats_module = pytest.importorskip("projections.journey_stats")
    await api.call("POST", "/v1/journeys", JOURNEYS)
    for journey_id in ("reengage-once", "reengage-weekly", API_JOURNEY):
        status, body = await api.call("POST", f"/v1/journeys/{journey_id}/launch")
        assert (status, body["status"]) == (200, "launched")
    inside: dict[str, int] = {}
    asked: list[list[str]] = []

    def inside_now(client: Any, journey_ids: Any) -> dict[str, int]:
        assert client == "the-client"
        asked.append(sorted(journey_ids))
        return {journey_id: inside.get(journey_id, 0) for journey_id in journey_ids}

    monkeypatch.setattr(stats_module, "inside_now", inside_now)

    async def statuses() -> dict[str, str]:
        status, body = await api.call("GET", "/v1/journeys", headers=READ)
        assert status == 200
        return {journey["id"]: journey["status"] for journey in body["journeys"]}

    async def shown(journey_id: str) -> str:
        status, body = await api.call("GET", f"/v1/journeys/{journey_id}", headers=READ)
        assert status == 200
        return str(body["status"])

    # Before the once run (2026-12-10 09:00 in Paris) nothing can be finished, and
    # ClickHouse is not asked.
    api.projections.client = cast(Any, "the-client")
    listed = await statuses()
    assert listed["reengage-once"] == "launched"
    assert asked == []

    api.engine.clock.advance(parse_timestamp("2026-12-10T08:00:00Z"))
    # No ClickHouse here (yet): who is inside is unknown, so still launched.
    api.projections.client = None
    assert (await statuses())["reengage-once"] == "launched"
    api.projections.client = cast(Any, "the-client")
    inside["reengage-once"] = 3
    assert (await statuses())["reengage-once"] == "launched"
    assert asked == [["reengage-once"]]  # only the journey whose entries are over
    inside["reengage-once"] = 0
    listed = await statuses()
    assert listed["reengage-once"] == "finished"
    # Recurring for ever, or users put in by API: never finished.
    assert listed["reengage-weekly"] == "launched"
    assert listed[API_JOURNEY] == "launched"
    assert listed["follow-up-push-email"] == "draft"
    assert await shown("reengage-once") == "finished"
    assert await shown("reengage-weekly") == "launched"

    # The lifecycle goes on from the stored state: a finished journey can be paused,
    # resumed (finished again) and stopped.
    path = "/v1/journeys/reengage-once"
    for action, state in (("pause", "paused"), ("resume", "finished"), ("stop", "stopped")):
        status, body = await api.call("POST", f"{path}/{action}")
        assert (status, body["status"]) == (200, state), body
    # Launched again: the past run comes due at once, and the launch answers launched.
    status, body = await api.call("POST", f"{path}/launch")
    assert (status, body["status"], body["launch"]) == (200, "launched", 2)


async def test_a_failing_clickhouse_leaves_the_stored_status(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    stats_module = pytest.importorskip("projections.journey_stats")
    await api.call("POST", "/v1/journeys", JOURNEYS[0])
    await api.call("POST", "/v1/journeys/reengage-once/launch")

    def inside_now(client: Any, journey_ids: Any) -> dict[str, int]:
        raise RuntimeError("ClickHouse is down")

    monkeypatch.setattr(stats_module, "inside_now", inside_now)
    api.projections.client = cast(Any, "the-client")
    api.engine.clock.advance(parse_timestamp("2026-12-16T00:00:00Z"))
    status, body = await api.call("GET", "/v1/journeys", headers=READ)
    assert (status, body["journeys"][0]["status"]) == (200, "launched")


def _webhook_journey(url: str) -> dict[str, Any]:
    return {
        "id": "hook",
        "name": "hook",
        "entries": [{"kind": "api"}],
        "start": "post",
        "nodes": [
            {"id": "post", "type": "webhook", "url": url, "next": {"next": "done"}},
            {"id": "done", "type": "exit"},
        ],
    }


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:9000/x", "http://[::1]/x", "http://169.254.169.254/latest/meta-data"],
)
async def test_a_webhook_to_a_literal_internal_address_is_refused_at_definition(
    api: Api, url: str
) -> None:
    status, body = await api.call("POST", "/v1/journeys", _webhook_journey(url))
    assert status == 400, body
    assert "step 'post'" in body["error"]
    assert "is not a public address (see REACH_WEBHOOK_ALLOW)" in body["error"]
    assert api.producer.keyed == []


async def test_a_webhook_to_a_public_name_is_accepted(api: Api) -> None:
    status, body = await api.call(
        "POST", "/v1/journeys", _webhook_journey("https://hooks.example.com/x")
    )
    assert status == 200, body


def _chain(count: int) -> dict[str, Any]:
    """A journey of ``count`` delays in a row, then an exit."""
    nodes: list[dict[str, Any]] = [
        {
            "id": f"wait-{n}",
            "type": "delay",
            "duration": {"amount": 1, "unit": "days"},
            "next": {"next": f"wait-{n + 1}" if n + 1 < count else "done"},
        }
        for n in range(count)
    ]
    nodes.append({"id": "done", "type": "exit"})
    return {
        "id": "long",
        "name": "Long",
        "entries": [{"kind": "api"}],
        "start": "wait-0",
        "nodes": nodes,
    }


def test_journeys_have_a_node_limit() -> None:
    # (Through the routes, such a journey is over this fixture's record limit first.)
    JourneyDefinition.model_validate(_chain(MAX_NODES - 1))
    with pytest.raises(ValidationError, match=f"at most {MAX_NODES} items"):
        JourneyDefinition.model_validate(_chain(MAX_NODES))


async def test_a_journey_over_the_record_limit_is_413_before_it_is_read(api: Api) -> None:
    status, body = await api.call("POST", "/v1/journeys", [_chain(MAX_NODES)])
    assert status == 413, body
    assert body["error"].startswith("journey 'long' is ")
    assert body["error"].endswith("bytes, over the limit of 2048 bytes")
    assert api.producer.keyed == []


async def test_a_journey_over_the_record_limit_is_413(api: Api) -> None:
    # Written compactly, but too large for one definitions record once read.
    journey = _chain(14)
    assert len(orjson.dumps(journey)) < 2048
    status, body = await api.call("POST", "/v1/journeys", journey)
    assert status == 413, body
    assert "as a record, over the limit of 2048 bytes" in body["error"]
    assert api.producer.keyed == []


async def test_api_entries_refuse_numbers_json_cannot_carry(api: Api) -> None:
    await api.call("POST", "/v1/journeys", JOURNEYS)
    await api.call("POST", f"/v1/journeys/{API_JOURNEY}/launch")
    response = await api.client.post(
        f"/v1/journeys/{API_JOURNEY}/entries",
        data=b'{"users": [{"user_id": "u1", "properties": {"score": NaN}}]}',
        headers={**INGEST, "Content-Type": "application/json"},
    )
    assert response.status == 400
    assert api.producer.records == []


async def test_lifecycle_changes_wait_for_the_first_tick_of_simulated_time(api: Api) -> None:
    assert (await api.call("POST", "/v1/journeys", JOURNEYS))[0] == 200
    journey_id = JOURNEYS[0]["id"]
    api.engine.clock = Clock("simulated")  # no tick yet: nothing to stamp a launch with
    status, body = await api.call("POST", f"/v1/journeys/{journey_id}/launch")
    assert status == 409
    assert "simulated time has not started" in body["error"]

    async def written() -> datetime:
        return parse_timestamp("2026-11-05T10:00:00Z")

    # A tick written but not yet applied here: the launch is stamped with it.
    api.engine.read_last_tick = written
    assert (await api.call("POST", f"/v1/journeys/{journey_id}/launch"))[0] == 200
    status_record = api.engine.definitions.registry.journeys[journey_id].status
    assert status_record is not None
    assert status_record.launched_at == parse_timestamp("2026-11-05T10:00:00Z")
