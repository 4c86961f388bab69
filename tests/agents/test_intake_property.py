"""Arbitrary records through the real intake agents (Faust's test context): the agent
never crashes, and each record is applied or dead-lettered, exactly once."""

from __future__ import annotations

import asyncio
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.codecs import InputCodec
from engine.intake import Source, intake
from schemas import DeadLetter, Event, Feedback, TagUpdate
from tests.agents.conftest import build_worker, driving
from tests.unit.test_intake_property import LIMIT, PRODUCER_LIMIT, keys, records

AGENTS: dict[str, tuple[str, Any]] = {
    "intake-events": ("events", Event),
    "intake-tag_updates": ("tag_updates", TagUpdate),
    "intake-feedback": ("feedback", Feedback),
}

NOW = datetime(2024, 5, 1, tzinfo=UTC)
headers = st.lists(st.tuples(st.text(max_size=12), st.binary(max_size=16)), max_size=3) | st.none()


@st.composite
def inputs(draw: st.DrawFn) -> tuple[str, list[tuple[bytes | None, bytes | None, Any]]]:
    agent = draw(st.sampled_from(sorted(AGENTS)))
    model = AGENTS[agent][1]
    batch = draw(st.lists(st.tuples(records(model), keys, headers), min_size=1, max_size=4))
    return agent, batch


async def _run(agent: str, batch: list[tuple[bytes | None, bytes | None, Any]]) -> None:
    table, model = AGENTS[agent]
    with tempfile.TemporaryDirectory() as data_dir:
        worker = build_worker(Path(data_dir), max_record_bytes=LIMIT)
        async with driving(worker, agent) as driver:
            for raw, key, found_headers in batch:
                await driver.put(raw, key=key, partition=1, headers=found_headers)
        assert driver.errors == []
        assert len(driver.held) == len(batch)  # every record went through, once

        codec = InputCodec(model, LIMIT)
        expected_valid = 0
        expected_dead: list[tuple[int, int | None]] = []
        for offset, (raw, key, _) in enumerate(batch):
            result = intake(codec, raw, Source(agent, 1, offset, key), NOW)
            expected_valid += len(result.valid)
            expected_dead += [(offset, letter.source_index) for letter in result.dead]
        sent = worker.dead_letters()
        letters = [DeadLetter.from_record(s.value, s.key, s.headers) for s in sent]
        assert sorted(
            (x.source_offset, -1 if x.source_index is None else x.source_index) for x in letters
        ) == sorted((offset, -1 if index is None else index) for offset, index in expected_dead)
        assert worker.engine.counters[f"{table}.valid"] == expected_valid
        assert worker.engine.counters[f"{table}.dead"] == len(expected_dead)
        assert worker.system.projections.sink.pending == expected_valid
        for record in sent:
            size = len(record.value) + len(record.key or b"")
            assert size + sum(len(n) + len(v) for n, v in record.headers) <= PRODUCER_LIMIT


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(inputs())
def test_the_intake_agents_survive_any_record(
    found: tuple[str, list[tuple[bytes | None, bytes | None, Any]]],
) -> None:
    asyncio.run(_run(*found))
