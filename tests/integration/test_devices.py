"""The device registry end to end: devices registered through the HTTP route reach the
user's state, a segment of reachable users, the projection (no token in clear), and a
journey's send command, which carries the channel's live devices; unregistering one
takes it out of the next command."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from schemas.devices import PushDevice, device_id
from streams.settings import Settings
from streams.topics import Topics
from tests.integration.seed_campaign import rows
from tests.integration.topic_reading import every_item
from tests.unit.journey_sim import preset
from worker.supervisor import SystemProcess

pytestmark = pytest.mark.integration

TOPICS = Topics.from_settings(Settings())
AT = "2026-12-01T10:00:00Z"
IPHONE = {"kind": "push", "platform": "ios", "token": "f" * 64, "app_id": "com.example.app"}
PIXEL = {"kind": "push", "platform": "android", "token": "fcm:token-1", "app_id": "com.ex"}


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SystemProcess]:
    env = {
        "REACH_HTTP_PORT": "0",
        "REACH_PARTITIONS": "2",
        "REACH_PROJECTION_FLUSH_SECONDS": "0.2",
        "REACH_DELIVER": "false",
    }
    with SystemProcess(tmp_path_factory.mktemp("devices"), env) as system:
        yield system


def register(user: str, device: dict[str, Any]) -> dict[str, Any]:
    return {"user_id": user, "device": device, "timestamp": AT}


JOURNEY = {
    "id": "push-me",
    "name": "Push me",
    "entries": [{"kind": "api"}],
    "start": "send",
    "nodes": [
        {"id": "send", "type": "message", "channel": "push", "preset": "hi",
         "next": {"next": "done"}},
        {"id": "done", "type": "exit"},
    ],
}  # fmt: skip


async def commands(system: SystemProcess, count: int) -> list[dict[str, Any]]:
    assert system.info is not None
    deadline = time.monotonic() + 30
    while True:
        found = await every_item(system.info.broker, TOPICS.send_commands)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.2)


def test_devices_registered_over_http_reach_segments_projection_and_commands(
    running: SystemProcess,
) -> None:
    api = running.http

    async def scenario() -> None:
        hi = preset("hi", "push").model_dump(mode="json")
        assert (await api.call("POST", "/v1/presets", hi))[0] == 200
        segment = {
            "id": "pushable",
            "name": "Pushable",
            "condition": {"kind": "reachable", "channel": "push"},
        }
        assert (await api.call("POST", "/v1/segments", segment))[0] == 200
        assert (await api.call("POST", "/v1/journeys", JOURNEY))[0] == 200
        assert (await api.call("POST", "/v1/journeys/push-me/launch"))[0] == 200

        bad = {"user_id": "ana", "device": {"kind": "phone", "number": "912"}, "timestamp": AT}
        status, answer = await api.call("POST", "/v1/devices", [register("ana", IPHONE), bad])
        assert status == 400
        assert [(e["index"], e["reason"]) for e in answer["errors"]] == [(1, "invalid_value")]
        updates = [register("ana", IPHONE), register("ana", PIXEL), register("bo", IPHONE)]
        status, answer = await api.call("POST", "/v1/devices", updates)
        assert (status, answer) == (200, {"accepted": 3, "errors": []})

        members = await rows(
            api, "SELECT user_id FROM segment_memberships FINAL WHERE change = 'entered' "
            "ORDER BY user_id", 2
        )  # fmt: skip
        assert members == [["ana"], ["bo"]]
        projected = await rows(
            api,
            "SELECT user_id, platform, address, live FROM devices FINAL ORDER BY user_id, platform",
            3,
        )
        assert [row[:2] for row in projected] == [["ana", "android"], ["ana", "ios"], ["bo", "ios"]]
        assert all(IPHONE["token"] not in str(row) and row[3] == 1 for row in projected)

        entries = {"users": [{"user_id": "ana"}]}
        assert (await api.call("POST", "/v1/journeys/push-me/entries", entries))[0] == 200
        [command] = await commands(running, 1)
        assert command["user_id"] == "ana"
        assert [d["token"] for d in command["devices"]] == [IPHONE["token"], PIXEL["token"]]

        # The provider says bo's only device is gone: bo is no longer reachable.
        gone = device_id(PushDevice.model_validate(IPHONE))
        unregister = {
            "user_id": "bo", "op": "unregister", "device_id": gone,
            "reason": "provider: Unregistered", "timestamp": AT,
        }  # fmt: skip
        assert (await api.call("POST", "/v1/devices", unregister))[0] == 200
        exited = await rows(
            api, "SELECT user_id FROM segment_memberships FINAL WHERE change = 'exited'", 1
        )
        assert exited == [["bo"]]
        entries = {"users": [{"user_id": "bo"}]}
        assert (await api.call("POST", "/v1/journeys/push-me/entries", entries))[0] == 200
        unreachable = await rows(
            api, "SELECT user_id, detail FROM journey_activity FINAL "
            "WHERE activity = 'unreachable'", 1
        )  # fmt: skip
        assert unreachable == [["bo", "no Push Token"]]
        assert len(await commands(running, 1)) == 1

    asyncio.run(scenario())
