"""Scale-out: the seed campaign on 8 partitions gives the same send commands and the
same statistics with one engine worker as with two (role ``segments``, one consumer
group) beside one projections worker, on one embedded broker, in simulated time.

The scenario drives time as an operator would: a tick, then the inputs of that instant,
and each phase waits until every worker is quiet (its status stops changing) before
the next one, so the outcome depends on the inputs and ticks alone, not on which
process owns which partition."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from client.system import HttpClient, send_tick
from schemas.values import parse_timestamp
from streams.broker import EmbeddedBroker
from streams.settings import Settings
from streams.topics import Topics
from tests.integration.seed_campaign import define_workspace, installed_users, seed_journeys
from worker.supervisor import SystemProcess

pytestmark = pytest.mark.integration

PARTITIONS = 8
USERS = [f"u{n:03d}" for n in range(300)]
LAUNCHED = ("reengage-once", "reengage-weekly", "follow-up-email-sms", "follow-up-push-email",
            "follow-up-push-whatsapp", "follow-up-email-sms-whatsapp")  # fmt: skip
PREFIX = "scale."
# A phase is over when no worker's status has changed for this long.
QUIET = 0.8
TIMEOUT = 60.0


def _number(user: str) -> int:
    return int(user[1:])


@dataclass
class Workers:
    projections: SystemProcess
    engines: list[SystemProcess]
    settings: Settings

    @property
    def api(self) -> HttpClient:
        """Ingest and queries go to the projections worker, definitions to an engine."""
        return self.projections.http

    async def tick(self, at: str) -> None:
        await send_tick(
            self.settings, Topics.from_settings(self.settings).clock, parse_timestamp(at)
        )
        # Every engine's clock has reached the tick, then everything it caused is done.
        deadline = time.monotonic() + TIMEOUT
        while True:
            clocks = [(await _status(engine))["clock"]["now"] for engine in self.engines]
            if all(parse_timestamp(clock) >= parse_timestamp(at) for clock in clocks):
                break
            assert time.monotonic() < deadline, f"clocks {clocks} never reached {at}"
            await asyncio.sleep(0.1)
        await self.quiet()

    async def quiet(self) -> None:
        """Wait until no worker's status changes for ``QUIET`` seconds."""
        last: list[Any] | None = None
        changed = time.monotonic()
        deadline = changed + TIMEOUT
        while True:
            seen = [await _status(worker) for worker in (self.projections, *self.engines)]
            now = time.monotonic()
            if seen != last:
                last, changed = seen, now
            elif now - changed >= QUIET:
                return
            assert now < deadline, "the workers never became quiet"
            await asyncio.sleep(0.2)


async def _status(worker: SystemProcess) -> dict[str, Any]:
    status, body = await worker.http.call("GET", "/v1/status")
    assert status == 200, body
    result: dict[str, Any] = body
    return result


async def _balanced(engines: list[SystemProcess], topic: str) -> None:
    """Wait until the engines' group has given each engine a share of ``topic``'s
    partitions and every partition to exactly one of them."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        shares = [
            {tp for tp in (await _status(engine))["assigned"] if tp.rsplit(":", 1)[0] == topic}
            for engine in engines
        ]
        owned = [tp for share in shares for tp in share]
        if all(shares) and len(owned) == len(set(owned)) == PARTITIONS:
            return
        assert time.monotonic() < deadline, f"partitions of {topic} never balanced: {shares}"
        await asyncio.sleep(0.2)


@contextlib.contextmanager
def workers(folder: Path, engines: int) -> Iterator[Workers]:
    """An embedded broker, one projections worker and ``engines`` engine workers."""
    with contextlib.ExitStack() as stack:
        broker = stack.enter_context(EmbeddedBroker())
        env = {
            "REACH_HTTP_PORT": "0",
            "REACH_BROKER_URL": f"kafka://{broker.bootstrap}",
            "REACH_TOPIC_PREFIX": PREFIX,
            "REACH_PARTITIONS": str(PARTITIONS),
            "REACH_CLOCK": "simulated",
            "REACH_PROJECTION_FLUSH_SECONDS": "0.2",
        }
        projections = SystemProcess(folder / "projections", {**env, "REACH_ROLE": "projections"})
        running = [
            SystemProcess(folder / f"engine-{n}", {**env, "REACH_ROLE": "segments"})
            for n in range(engines)
        ]
        # Started side by side, as each start is mostly waiting. A child is stopped when
        # the thread that started it ends: the threads live as long as the processes.
        pool = stack.enter_context(ThreadPoolExecutor(1 + engines))
        everyone = (projections, *running)
        stack.callback(lambda: list(pool.map(SystemProcess.stop, everyone)))
        list(pool.map(SystemProcess.start, everyone))
        settings = Settings(broker_url=env["REACH_BROKER_URL"], topic_prefix=PREFIX)
        asyncio.run(_balanced(running, Topics.from_settings(settings).events))
        yield Workers(projections, running, settings)


async def _listed(engines: list[SystemProcess], path: str, key: str, ids: set[str]) -> None:
    """Wait until every engine has read the definitions ``ids`` (listed at ``path``)."""
    deadline = time.monotonic() + TIMEOUT
    for engine in engines:
        while True:
            _, body = await engine.http.call("GET", path)
            if ids <= {item["id"] for item in body[key]}:
                break
            assert time.monotonic() < deadline, f"{engine.data_dir}: {path} lacks {ids}"
            await asyncio.sleep(0.1)


async def _post(api: HttpClient, path: str, body: Any) -> None:
    status, answer = await api.call("POST", path, body)
    assert status == 200, answer


def _event(user: str, name: str, at: str, **attributes: Any) -> dict[str, Any]:
    return {"user_id": user, "name": name, "timestamp": at, "attributes": attributes}


async def campaign(run: Workers) -> None:
    """The seed's workspace and journeys over six weeks of simulated time."""
    engine = run.engines[0].http
    await run.tick("2026-11-01T09:00:00Z")
    await define_workspace(engine)
    await _listed(run.engines, "/v1/segments", "segments", {"inactive-7d", "lapsed-portuguese"})
    tags = installed_users(USERS)
    for update in tags:
        number = _number(update["user_id"])
        update["tags"]["Country"] = "PT" if number % 3 == 0 else "FR"
        update["tags"]["Language"] = "hi" if number % 5 == 0 else "en"
        if number % 11 == 0:
            update["tags"]["Phone"] = f"+3519{number:08d}"
    await _post(run.api, "/v1/tags", tags)
    await run.quiet()

    # Buyers: twice in November (they leave buyers-2-in-30d in December).
    await run.tick("2026-11-20T10:00:00Z")
    at = "2026-11-20T10:00:00Z"
    buys = [
        _event(user, "InAppPurchase", at, n=n) for user in USERS[::7] for n in (1, 2)
    ]  # fmt: skip
    await _post(run.api, "/v1/events", buys)
    await run.quiet()

    # A quarter of the users open the app: not inactive on 10 Dec.
    await run.tick("2026-12-09T12:00:00Z")
    opens = [_event(user, "ApplicationOpen", "2026-12-09T12:00:00Z") for user in USERS[::4]]
    await _post(run.api, "/v1/events", opens)
    await run.quiet()

    await run.tick("2026-12-10T07:00:00Z")
    await _post(engine, "/v1/journeys", seed_journeys())
    await _listed(run.engines, "/v1/journeys", "journeys", set(LAUNCHED))
    for journey in LAUNCHED:
        await _post(engine, f"/v1/journeys/{journey}/launch", None)
    await _launched(run.engines)
    await run.quiet()

    # 09:00 in Paris: the once-only run; then triggers and API entries of that instant.
    await run.tick("2026-12-10T08:00:00Z")
    at = "2026-12-10T08:00:00Z"
    triggers = [_event(user, "FlightChanged", at) for user in USERS[1::6]]
    triggers += [_event(user, "CartAbandoned", at, value=80) for user in USERS[2::9]]
    triggers += [_event(user, "CartAbandoned", at, value=20) for user in USERS[4::9]]
    await _post(run.api, "/v1/events", triggers)
    entries = {
        "users": [{"user_id": user, "properties": {"plan": "gold"}} for user in USERS[3::10]]
    }
    await _post(engine, "/v1/journeys/follow-up-email-sms-whatsapp/entries", entries)
    await run.quiet()

    # Friday 17:00 in Paris: the weekly run; the push splits ended before it.
    await run.tick("2026-12-11T16:00:00Z")

    # Some users open their first message (delivered first), some renew.
    await run.tick("2026-12-12T10:00:00Z")
    _, sent = await run.api.query(
        "SELECT command_id, user_id, channel FROM send_commands FINAL ORDER BY command_id"
    )
    at = "2026-12-12T10:00:00Z"
    feedback = [
        {"command_id": command, "user_id": user, "status": status, "channel": channel,
         "timestamp": at}
        for command, user, channel in sent
        if _number(user) % 2 == 0
        for status in ("delivered", "opened")
    ]  # fmt: skip
    await _post(run.api, "/v1/feedback", feedback)
    renewals = [_event(user, "SubscriptionRenewed", at) for user in USERS[13::20]]
    await _post(run.api, "/v1/events", renewals)
    await run.quiet()

    # Every split, delay and reminder of the campaign is over.
    await run.tick("2026-12-17T00:00:00Z")


async def _launched(engines: list[SystemProcess]) -> None:
    deadline = time.monotonic() + TIMEOUT
    for engine in engines:
        while True:
            _, body = await engine.http.call("GET", "/v1/journeys")
            states = {j["id"]: j["status"] for j in body["journeys"] if j["id"] in LAUNCHED}
            if all(state == "launched" for state in states.values()):
                break
            assert time.monotonic() < deadline, f"{engine.data_dir}: {states}"
            await asyncio.sleep(0.1)


STATISTICS = {
    "send_commands": "SELECT journey_id, step, channel, count() FROM send_commands FINAL "
    "GROUP BY ALL ORDER BY ALL",
    "journey_activity": "SELECT journey_id, step, activity, count() FROM journey_activity FINAL "
    "GROUP BY ALL ORDER BY ALL",
    "journey_edge_stats": "SELECT journey_id, from_step, output, to_step, users "
    "FROM journey_edge_stats ORDER BY ALL",
    "segment_memberships": "SELECT segment_id, change, count() FROM segment_memberships FINAL "
    "GROUP BY ALL ORDER BY ALL",
    "segment_sizes": "SELECT segment_id, toString(hour), entered, exited, members "
    "FROM segment_sizes ORDER BY ALL",
}


@dataclass
class Outcome:
    command_ids: set[str]
    statistics: dict[str, list[tuple[Any, ...]]]
    inputs_per_engine: list[int]


async def outcome(run: Workers) -> Outcome:
    _, ids = await run.api.query("SELECT command_id FROM send_commands FINAL")
    statistics = {}
    for name, sql in STATISTICS.items():
        _, found = await run.api.query(sql)
        statistics[name] = [tuple(row) for row in found]
    inputs = [int((await _status(engine))["segments"]["inputs"]) for engine in run.engines]
    return Outcome({row[0] for row in ids}, statistics, inputs)


def play(folder: Path, engines: int) -> Outcome:
    with workers(folder, engines) as run:

        async def scenario() -> Outcome:
            await campaign(run)
            return await outcome(run)

        return asyncio.run(scenario())


def test_two_engine_workers_give_what_one_gives(tmp_path: Path) -> None:
    one = play(tmp_path / "one", engines=1)
    # The campaign did something in every journey and segment it has.
    sent = {row[0] for row in one.statistics["send_commands"]}
    assert sent == set(LAUNCHED), one.statistics["send_commands"]
    assert len(one.command_ids) > len(USERS)
    two = play(tmp_path / "two", engines=2)
    # Each of the two engines applied its share of the inputs.
    assert len(two.inputs_per_engine) == 2
    assert min(two.inputs_per_engine) > 0, two.inputs_per_engine
    for name in STATISTICS:
        print(name, "one worker:", one.statistics[name], "two workers:", two.statistics[name])
    assert sorted(one.command_ids - two.command_ids) == []
    assert sorted(two.command_ids - one.command_ids) == []
    assert two.statistics == one.statistics
