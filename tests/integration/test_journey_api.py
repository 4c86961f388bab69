"""The journey API and CLI against a running system: the seed's segments, presets and
journeys applied over HTTP, listed and shown, driven through their lifecycle with its
refusals, and API entries produced to the journey-entries topic; presets through the
CLI. What the journeys then do is the engine's business
(tests/integration/test_journeys.py)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from aiokafka import AIOKafkaConsumer, TopicPartition
from click.testing import CliRunner

from cli.main import main
from client.system import HttpClient
from files.journeys import read
from files.segments import load as load_segments
from streams.partitioning import partition_for
from streams.settings import Settings
from streams.topics import Topics
from tests.integration.conftest import API_KEY
from worker.supervisor import SystemProcess

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).parents[2] / "examples"
TOPICS = Topics.from_settings(Settings())
JOURNEYS: list[dict[str, Any]] = orjson.loads(orjson.dumps(read(EXAMPLES / "seed-journeys.yaml")))
PRESETS: list[dict[str, Any]] = orjson.loads(orjson.dumps(read(EXAMPLES / "seed-presets.yaml")))
API_JOURNEY = "follow-up-email-sms-whatsapp"
INGEST_KEY = "ingest-only-key-012345"


@pytest.fixture(scope="module")
def seeded(system: SystemProcess) -> SystemProcess:
    """The seed's segments, presets and journeys, applied once for the module."""
    segments = [d.model_dump(mode="json") for d in load_segments(EXAMPLES / "seed-segments.yaml")]

    async def apply() -> None:
        status, body = await system.http.call("POST", "/v1/segments", segments)
        assert status == 200, body
        status, body = await system.http.call("POST", "/v1/presets", PRESETS)
        assert status == 200, body
        status, body = await system.http.call("POST", "/v1/journeys", JOURNEYS)
        assert status == 200, body
        assert body["applied"] == [{"id": item["id"], "version": 1} for item in JOURNEYS]

    asyncio.run(apply())
    return system


async def entry_records(bootstrap: str, count: int) -> list[tuple[int, list[dict[str, Any]]]]:
    """(partition, items) of the journey-entries records, once ``count`` items are read."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        topic = TOPICS.journey_entries
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        found: list[tuple[int, list[dict[str, Any]]]] = []
        deadline = time.monotonic() + 20
        while sum(len(items) for _, items in found) < count and time.monotonic() < deadline:
            for tp, messages in (await consumer.getmany(timeout_ms=300)).items():
                found.extend((tp.partition, orjson.loads(m.value)) for m in messages)
        return found
    finally:
        await consumer.stop()


def test_list_and_show(seeded: SystemProcess) -> None:
    api = seeded.http

    async def scenario() -> None:
        status, body = await api.call("GET", "/v1/journeys")
        assert status == 200
        listed = {journey["id"]: journey for journey in body["journeys"]}
        assert sorted(listed) == sorted(item["id"] for item in JOURNEYS)
        assert listed[API_JOURNEY]["entries"] == ["api"]
        assert listed["follow-up-push-email"]["entries"] == ["trigger FlightChanged"]
        assert {journey["version"] for journey in listed.values()} == {1}

        status, body = await api.call("GET", "/v1/journeys/follow-up-email-sms")
        assert status == 200
        assert (body["status"], body["launch"], body["versions"]) == ("draft", 0, [1])
        [entry] = body["definition"]["entries"]
        assert (entry["segment"], entry["schedule"]["kind"]) == ("lapsed-portuguese", "now")
        # What show gives can be applied again: a new version.
        status, body = await api.call("POST", "/v1/journeys", body["definition"])
        assert (status, body) == (200, {"applied": [{"id": "follow-up-email-sms", "version": 2}]})
        status, body = await api.call("GET", "/v1/journeys/follow-up-email-sms?version=1")
        assert (status, body["version"], body["versions"]) == (200, 1, [1, 2])
        assert (await api.call("GET", "/v1/journeys/nobody"))[0] == 404

    asyncio.run(scenario())


def test_lifecycle_and_refusals(seeded: SystemProcess) -> None:
    api = seeded.http
    path = "/v1/journeys/follow-up-push-email"

    async def scenario() -> None:
        status, body = await api.call("POST", f"{path}/pause")
        assert status == 409
        assert body["error"] == (
            "journey 'follow-up-push-email' is draft: it cannot pause (only when launched)"
        )
        for action, state, launch in (
            ("launch", "launched", 1),
            ("pause", "paused", 1),
            ("resume", "launched", 1),
            ("stop", "stopped", 1),
            ("launch", "launched", 2),
        ):
            status, body = await api.call("POST", f"{path}/{action}")
            assert (status, body["status"], body["launch"]) == (200, state, launch), body
        status, body = await api.call("POST", f"{path}/resume")
        assert status == 409
        assert "is launched: it cannot resume" in body["error"]
        status, body = await api.call("POST", f"{path}/rename", {"name": "Flight change"})
        assert (status, body["name"]) == (200, "Flight change")
        _, body = await api.call("GET", path)
        assert (body["name"], body["status"], body["launch"]) == ("Flight change", "launched", 2)
        assert (await api.call("POST", f"{path}/stop"))[0] == 200

        # An ingest-only key may not drive journeys.
        ingest_only = HttpClient(api.url, INGEST_KEY)
        status, body = await ingest_only.call("POST", f"{path}/launch")
        assert status == 401
        assert "admin" in body["error"]
        assert (await api.call("POST", "/v1/journeys/nobody/launch"))[0] == 404

        # A journey on an unknown segment is refused, naming it; nothing is applied.
        unknown = {
            **JOURNEYS[0],
            "id": "on-a-ghost",
            "entries": [{"kind": "audience", "segment": "no-such-segment"}],
        }
        status, body = await api.call("POST", "/v1/journeys", [JOURNEYS[1], unknown])
        assert status == 400
        assert body["error"] == "journey 'on-a-ghost' uses unknown segment 'no-such-segment'"
        _, body = await api.call("GET", "/v1/journeys/reengage-weekly")
        assert body["versions"] == [1]
        # A preset of another channel, naming the node, the preset and both channels.
        wrong = orjson.loads(orjson.dumps({**JOURNEYS[0], "id": "wrong-channel"}))
        wrong["nodes"][1]["preset"] = "renewal-sms"
        status, body = await api.call("POST", "/v1/journeys", wrong)
        assert status == 400
        assert body["error"] == (
            "journey 'wrong-channel': node 'second-email' sends on email "
            "but preset 'renewal-sms' is for sms"
        )
        # An invalid one, naming the node.
        broken = orjson.loads(orjson.dumps(JOURNEYS[0]))
        broken["nodes"][0]["next"] = {"opened": "done"}
        status, body = await api.call("POST", "/v1/journeys", broken)
        assert status == 400
        assert "node 'first-email': output 'not_opened' is not connected" in body["error"]

    asyncio.run(scenario())


def test_api_entries(seeded: SystemProcess) -> None:
    api = seeded.http
    ingest_only = HttpClient(api.url, INGEST_KEY)
    path = f"/v1/journeys/{API_JOURNEY}/entries"
    users: list[dict[str, Any]] = [
        {"user_id": f"renewal-{n}", "properties": {"plan": "gold", "n": n}} for n in range(6)
    ]

    async def scenario() -> None:
        status, body = await ingest_only.call("POST", path, {"users": users})
        assert status == 409
        assert "is draft: users enter only when launched" in body["error"]
        assert (await api.call("POST", f"/v1/journeys/{API_JOURNEY}/launch"))[0] == 200
        status, body = await ingest_only.call("POST", path, {"users": users})
        assert (status, body["accepted"], len(body["entry_ids"])) == (200, 6, 6)
        entry_ids = body["entry_ids"]

        # Journeys without an API entry refuse, launched or not.
        assert (await api.call("POST", "/v1/journeys/follow-up-push-whatsapp/launch"))[0] == 200
        for other in ("follow-up-push-whatsapp", "reengage-weekly"):
            status, body = await ingest_only.call(
                "POST", f"/v1/journeys/{other}/entries", {"users": users[:1]}
            )
            assert status == 409, other
        status, body = await ingest_only.call(
            "POST", "/v1/journeys/follow-up-push-whatsapp/entries", {"users": users[:1]}
        )
        assert body["error"] == (
            "journey 'follow-up-push-whatsapp' has no api entry: users cannot be put in by API"
        )

        # One JSON array per record, each on the partition its users' events go to.
        assert seeded.info is not None
        records = await entry_records(seeded.info.broker, 6)
        entries: dict[str, dict[str, Any]] = {}
        for partition, items in records:
            for item in items:
                assert partition == partition_for(item["user_id"], 2)
                entries[item["user_id"]] = item
        assert sorted(entries) == sorted(user["user_id"] for user in users)
        assert entries["renewal-3"]["properties"] == {"plan": "gold", "n": 3}
        assert {item["journey_id"] for item in entries.values()} == {API_JOURNEY}
        assert [entries[user["user_id"]]["entry_id"] for user in users] == entry_ids

    asyncio.run(scenario())


def test_cli(seeded: SystemProcess, tmp_path: Path) -> None:
    journey = {
        "id": "cli-renewal",
        "name": "Renewal from the CLI",
        "entries": [{"kind": "api"}],
        "start": "email",
        "nodes": [
            {
                "id": "email",
                "type": "message",
                "channel": "email",
                "preset": "renewal-email",
                "next": {"next": "done"},
            },
            {"id": "done", "type": "exit"},
        ],
    }
    path = tmp_path / "journey.yaml"
    path.write_text(yaml.safe_dump(journey))
    runner = CliRunner(env={"REACH_DATA_DIR": str(seeded.data_dir), "REACH_API_KEY": API_KEY})

    def reach(*args: str) -> str:
        result = runner.invoke(main, ["journeys", *args])
        assert result.exit_code == 0, result.output
        return result.output

    assert reach("apply", str(path)) == "applied cli-renewal (version 1)\n"
    assert reach("apply", str(path)) == "applied cli-renewal (version 2)\n"
    assert reach("launch", "cli-renewal") == "cli-renewal: launched (launch 1)\n"
    assert reach("pause", "cli-renewal") == "cli-renewal: paused (launch 1)\n"
    assert reach("resume", "cli-renewal") == "cli-renewal: launched (launch 1)\n"
    assert reach("rename", "cli-renewal", "Renewal") == "cli-renewal: renamed to Renewal\n"
    assert "cli-renewal" in reach("list")
    shown = orjson.loads(reach("show", "cli-renewal", "--version", "1"))
    assert (shown["version"], shown["versions"], shown["name"]) == (1, [1, 2], "Renewal")
    assert reach("enter", "cli-renewal", "u1", "--properties", '{"plan": "gold"}').startswith(
        "entered u1 into cli-renewal (entry "
    )
    assert "cli-renewal" in reach("stats", "cli-renewal")
    assert reach("stop", "cli-renewal") == "cli-renewal: stopped (launch 1)\n"

    refused = runner.invoke(main, ["journeys", "pause", "cli-renewal"])
    assert refused.exit_code == 1
    assert "is stopped: it cannot pause" in refused.output
    refused = runner.invoke(main, ["journeys", "enter", "cli-renewal", "u1", "--properties", "[]"])
    assert refused.exit_code == 2
    assert "must be a JSON object" in refused.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**journey, "start": "nowhere"}))
    refused = runner.invoke(main, ["journeys", "apply", str(bad)])
    assert refused.exit_code == 1
    assert "start node 'nowhere' is not among the nodes" in refused.output


def test_presets_cli(seeded: SystemProcess, tmp_path: Path) -> None:
    preset = {
        "id": "cli-hello",
        "name": "Hello from the CLI",
        "channel": "push",
        "default_language": "en",
        "content": {"title": "Hi {{tag.First Name|there}}", "body": "For {{user_id}}"},
        "variants": {"pt": {"title": "Olá {{tag.First Name|}}", "body": "Para {{user_id}}"}},
    }
    path = tmp_path / "preset.yaml"
    path.write_text(yaml.safe_dump(preset, allow_unicode=True))
    runner = CliRunner(env={"REACH_DATA_DIR": str(seeded.data_dir), "REACH_API_KEY": API_KEY})

    def reach(*args: str, code: int = 0) -> str:
        result = runner.invoke(main, ["presets", *args])
        assert result.exit_code == code, result.output
        return result.output

    assert reach("apply", str(path)) == "applied cli-hello (version 1)\n"
    assert reach("apply", str(path)) == "applied cli-hello (version 2)\n"
    listed = reach("list")
    assert "cli-hello" in listed
    assert "we-miss-you" in listed
    shown = orjson.loads(reach("show", "we-miss-you"))
    assert (shown["channel"], shown["languages"]) == ("email", ["hi", "pt"])
    assert "reengage-once" in shown["used_by"]
    rendered = orjson.loads(
        reach("render", "cli-hello", "--tags", '{"Language": "pt-BR", "First Name": "Ana"}',
              "--user-id", "u7")
    )  # fmt: skip
    assert (rendered["language"], rendered["content"]["title"]) == ("pt", "Olá Ana")
    assert rendered["content"]["body"] == "Para u7"
    # No user id for {{user_id}}: the preview says what is missing.
    assert "no value for {{user_id}} and no default" in reach("render", "cli-hello", code=1)
    assert "must be a JSON object" in reach("render", "cli-hello", "--tags", "[]", code=2)
    # In use by the seed's journeys: not deleted.
    assert "is used by journey reengage-once" in reach("delete", "we-miss-you", code=1)
    assert reach("delete", "cli-hello") == "deleted cli-hello (version 3)\n"
    assert "no preset 'cli-hello'" in reach("show", "cli-hello", code=1)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**preset, "content": {"title": "{{tag.Name", "body": "b"}}))
    assert "preset 'cli-hello': content.title: '{{' at character 1 is not closed" in reach(
        "apply", str(bad), code=1
    )
