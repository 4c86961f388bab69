"""(c) The delivery worker SIGKILLed between the provider call and the ledger write: a
webhook receiver answers, then kills the worker before it can record the delivery, and
counts every request by its ``Idempotency-Key``. Compared with a clean run of the same
launch."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.chaos.checker import Check, assert_all, compare, structure
from tests.chaos.harness import HOOK, LAUNCH, Cluster, Outcome, Story

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.chaos_full]

SCALE = float(os.environ.get("REACH_CHAOS_SCALE", "1"))
USERS = max(100, int(2_000 * SCALE))


class Receiver:
    """A webhook endpoint that counts requests per idempotency key; ``after_answer``
    runs once a request's answer is written, with the number of requests so far."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.keyless = 0
        self.after_answer: Callable[[int], None] | None = None
        self.runner: web.AppRunner | None = None
        self.url = ""
        self.address = ""  # host:port, for the allow-list of webhook destinations

    async def handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        key = request.headers.get("Idempotency-Key")
        if key:
            self.calls[key] += 1
        else:
            self.keyless += 1
        response = web.json_response({"ok": True})
        await response.prepare(request)
        await response.write_eof()
        if self.after_answer is not None:
            self.after_answer(sum(self.calls.values()) + self.keyless)
        return response

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        host, port = self.runner.addresses[0][:2]
        self.url = f"http://{host}:{port}/hook"
        self.address = f"{host}:{port}"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def journey(url: str) -> dict[str, Any]:
    return {
        "id": HOOK,
        "name": "A webhook to everyone inactive",
        "entries": [{"kind": "audience", "segment": "inactive-7d", "schedule": {"kind": "now"}}],
        "start": "call",
        "nodes": [
            {"id": "call", "type": "webhook", "url": url, "next": {"next": "done"}},
            {"id": "done", "type": "exit"},
        ],
    }


async def launch(folder: Path, story: Story, kills: int) -> tuple[Outcome, Receiver, list[str]]:
    receiver = Receiver()
    await receiver.start()
    try:
        async with Cluster(folder, 2, story) as cluster:
            # The receiver listens on loopback, which webhooks reach only when allowed.
            cluster.base_env["REACH_WEBHOOK_ALLOW"] = receiver.address
            engine = await cluster.add_engine()
            delivery = await cluster.add_delivery()
            restarts: list[asyncio.Task[None]] = []
            thresholds = [story.users * (n + 1) // (kills + 1) for n in range(kills)]

            def after_answer(calls: int) -> None:
                # Answered, not yet in the ledger: the worker settles a record's
                # commands once all of them are answered.
                if thresholds and calls >= thresholds[0] and delivery.alive:
                    thresholds.pop(0)
                    cluster.kill(delivery)
                    cluster.note(f"killed delivery after {calls} answered requests")
                    restarts.append(asyncio.create_task(cluster.restart(delivery)))

            receiver.after_answer = after_answer
            await cluster.define_segments(engine)
            await cluster.quiesce()
            await cluster.ingest("tags", story.tags())
            await cluster.tick(LAUNCH - timedelta(hours=1))
            await cluster.quiesce()
            await cluster.define_journeys(engine, [journey(receiver.url)], (HOOK,))
            await cluster.tick(LAUNCH)
            await cluster.quiesce()
            while restarts:
                await restarts.pop()
                await cluster.quiesce()
            outcome = await cluster.outcome()
            rows = await cluster.query(
                "SELECT count(), uniqExact(command_id) FROM feedback FINAL "
                "WHERE status = 'delivered'"
            )
            outcome.extra["delivered"] = {"rows": int(rows[0][0]), "commands": int(rows[0][1])}
            return outcome, receiver, cluster.log
    finally:
        await receiver.stop()


def provider_checks(clean: Outcome, faulty: Outcome, receiver: Receiver) -> list[Check]:
    keys = set(receiver.calls)
    repeated = {key: n for key, n in receiver.calls.items() if n > 1}
    missing = faulty.command_ids - keys
    extra = keys - faulty.command_ids
    return [
        Check(
            "each id reaches the provider at most once (counted by idempotency key)",
            not extra and receiver.keyless == 0,
            f"{sum(receiver.calls.values())} requests, {len(keys)} distinct keys, "
            f"{receiver.keyless} without a key, {len(extra)} keys that are no command id; "
            f"{len(repeated)} keys sent again after the crash (the receiver drops repeats)",
        ),
        Check(
            "every webhook command reached the provider",
            not missing,
            f"{len(missing)} of {len(faulty.command_ids)} never called"
            + (f", e.g. {sorted(missing)[:3]}" if missing else ""),
        ),
        Check(
            "feedback 'delivered' FINAL: one per command, as in the clean run",
            faulty.extra["delivered"] == clean.extra["delivered"]
            and faulty.extra["delivered"]["rows"] == len(faulty.command_ids),
            f"clean {clean.extra['delivered']}, faulty {faulty.extra['delivered']}, "
            f"{len(faulty.command_ids)} commands",
        ),
    ]


@pytest.mark.timeout(3600)
def test_c_sigkill_the_delivery_worker_between_the_provider_call_and_the_ledger_write(
    tmp_path: Path,
) -> None:
    story = Story(USERS)
    clean, clean_receiver, _ = asyncio.run(launch(tmp_path / "clean", story, kills=0))
    faulty, receiver, log = asyncio.run(launch(tmp_path / "faulty", story, kills=3))
    checks = [
        *provider_checks(clean, clean, clean_receiver),
        *provider_checks(clean, faulty, receiver),
        *compare(clean, faulty),
        *structure(story, faulty, "faulty"),
    ]
    assert_all(
        f"(c) SIGKILL delivery after the provider answered, {story.users} users", checks, log
    )
