"""Fault-injection scenarios: each plays the same seeded inputs and ticks twice on the
real embedded broker and ClickHouse, once clean and once with faults, and checks every
invariant of :mod:`tests.chaos.checker` (printed PASS/FAIL with counts).

The small sizes run in ``make test``; the ``chaos_full`` ones (large sizes, and the
scenarios that only run there) in ``make chaos``.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from tests.chaos.checker import Check, assert_all, compare, model, structure
from tests.chaos.harness import (
    MOMENTS,
    ONCE,
    SESSION_TIMEOUT,
    TOPICS,
    WAIT_ENDS,
    Cluster,
    Hook,
    Outcome,
    Story,
    Worker,
    no_fault,
    play,
)

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

# REACH_CHAOS_SCALE scales the full forms' sizes (e.g. 0.1 for a quicker look).
SCALE = float(os.environ.get("REACH_CHAOS_SCALE", "1"))
SMALL = 1000
SMALL_STORY = Story(SMALL, future=True, launch_first=True)
LARGE = max(100, int(50_000 * SCALE))
LIVE_LARGE = max(100, int(10_000 * SCALE))
MEDIUM = max(100, int(5_000 * SCALE))


@dataclass
class Played:
    story: Story
    outcome: Outcome
    log: list[str]


def run(folder: Path, story: Story, partitions: int = 2, hook: Hook = no_fault) -> Played:
    async def scenario() -> Played:
        async with Cluster(folder, partitions, story) as cluster:
            outcome = await play(cluster, hook)
            return Played(story, outcome, cluster.log)

    return asyncio.run(scenario())


def verdict(title: str, clean: Played, faulty: Played, with_model: bool = False) -> None:
    """The faulty run against the clean run, and its own structure; ``with_model``:
    the clean run against the model too (the small forms leave that to
    :func:`test_the_clean_run_follows_the_model`, which they share)."""
    checks: list[Check] = [
        *(model(clean.story, clean.outcome, "clean") if with_model else []),
        *compare(clean.outcome, faulty.outcome),
        *structure(faulty.story, faulty.outcome, "faulty"),
    ]
    assert_all(title, checks, faulty.log)


# --- faults ---------------------------------------------------------------------------


def kill_during_launch(kills: int) -> Hook:
    """SIGKILL the engine ``kills`` times while the launch's send commands come out (at
    the first new command on the topic after the tick or the restart, or after a few
    seconds without one), and start it again on its data directory each time."""

    async def hook(cluster: Cluster, moment: str) -> None:
        if moment != "launch":
            return
        seen = 0
        for n in range(1, kills + 1):
            seen = await cluster.when_items(TOPICS.send_commands, seen + 1, timeout=3, poll=0.02)
            engine = cluster.live_engines[0]
            cluster.kill(engine)
            cluster.note(f"kill {n} at {seen} send commands")
            await cluster.restart(engine)

    return hook


def kill_across_due_instants(moments: tuple[str, ...] = MOMENTS[1:]) -> Hook:
    """SIGKILL the engine right after each of ``moments``' input batch or tick (opens
    in flight, split timeouts, delays, replies, wait timeouts), and start it again."""

    async def hook(cluster: Cluster, moment: str) -> None:
        if moment not in moments:
            return
        engine = cluster.live_engines[0]
        before = await cluster.count_items(TOPICS.send_commands)
        await cluster.when_items(TOPICS.send_commands, before + 1, timeout=1.5, poll=0.1)
        cluster.kill(engine)
        cluster.note(f"kill at {moment}")
        await cluster.restart(engine)

    return hook


def scale_out_and_in() -> Hook:
    """1 -> 2 -> 1 engine workers: a second one joins during the launch and leaves
    (gracefully) while the replies are produced."""

    async def hook(cluster: Cluster, moment: str) -> None:
        if moment == "launch":
            await cluster.add_engine()
        elif moment == "replies":
            second = cluster.engines[1]
            await second.stop()
            cluster.note(f"stopped {second.name}")

    return hook


def pause_past_session_timeout() -> Hook:
    """Two engine workers; at the split timeouts the first is SIGSTOPped for three
    session timeouts (the other takes its partitions), then SIGCONTed."""

    async def hook(cluster: Cluster, moment: str) -> None:
        if moment == "launch":
            await cluster.add_engine()
        elif moment == "splits":
            first: Worker = cluster.engines[0]
            first.pause()
            cluster.note(f"SIGSTOP {first.name}")
            await asyncio.sleep(3 * SESSION_TIMEOUT)
            first.resume()
            cluster.note(f"SIGCONT {first.name}")

    return hook


VIP_AGAIN = {
    "id": "vip",
    "name": "VIP (gold too)",
    "expression": 'T("Tier", eq, "vip") + T("Tier", eq, "gold")',  # nobody is gold
}


def change_definitions(during_launch: bool) -> Hook:
    """At the launch, a segment definition change (same members, every user evaluated
    again) and a pause and resume of the launched journey (at one simulated instant,
    so nothing moves meanwhile). Clean: once the launch has settled. Faulty: while
    its commands come out, then a SIGKILL and a restart."""

    async def hook(cluster: Cluster, moment: str) -> None:
        if moment != "launch":
            return
        engine = cluster.live_engines[0]
        if during_launch:
            await cluster.when_items(TOPICS.send_commands, 1, timeout=5, poll=0.02)
        else:
            await cluster.quiesce()
        await cluster.post("/v1/segments", [VIP_AGAIN], engine.http)
        await cluster.post(f"/v1/journeys/{ONCE}/pause", None, engine.http)
        await cluster.post(f"/v1/journeys/{ONCE}/resume", None, engine.http)
        cluster.note("redefined vip, paused and resumed chaos-once")
        if during_launch:
            await asyncio.sleep(0.5)
            cluster.kill(engine)
            await cluster.restart(engine)

    return hook


# --- fixtures -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clean_small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Played, Played]:
    """The clean run of the small story that (a), (b) and (f) share, and (f) a full
    replay after it: a new consumer group from the earliest offsets with an empty state
    directory, at a later simulated now. The story launches its journeys before the
    first tick, and a few users send events dated after every wait ends."""
    return replayed(tmp_path_factory.mktemp("clean"), SMALL_STORY)


def replayed(folder: Path, story: Story) -> tuple[Played, Played]:
    async def scenario() -> tuple[Played, Played]:
        async with Cluster(folder, 2, story) as cluster:
            clean = Played(story, await play(cluster), list(cluster.log))
            return clean, Played(story, await full_replay(cluster), cluster.log)

    return asyncio.run(scenario())


async def full_replay(cluster: Cluster) -> Outcome:
    for engine in cluster.live_engines:
        await engine.stop()
    cluster.note("stopped every engine")
    started = time.monotonic()
    # The later now is on the clock topic before the new group starts reading.
    await cluster.tick(WAIT_ENDS + timedelta(days=1, hours=3))
    await cluster.add_engine({"REACH_APP_ID": "chaos-replay"})
    cluster.note("started a new group (chaos-replay) with an empty state directory")
    await cluster.quiesce(quiet=6.0)
    cluster.note(f"replay settled in {time.monotonic() - started:.0f} s")
    return await cluster.outcome()


# --- scenarios ------------------------------------------------------------------------


@pytest.mark.timeout(900)
def test_the_clean_run_follows_the_model(clean_small: tuple[Played, Played]) -> None:
    clean, _ = clean_small
    checks = model(clean.story, clean.outcome, "clean")
    assert_all(f"the clean run of {clean.story.users} users against the model", checks, clean.log)


@pytest.mark.timeout(900)
def test_a_sigkill_five_times_during_an_audience_launch(
    clean_small: tuple[Played, Played], tmp_path: Path
) -> None:
    clean, _ = clean_small
    faulty = run(tmp_path, clean.story, hook=kill_during_launch(5))
    verdict(f"(a) SIGKILL x5 during a launch to {clean.story.users} users", clean, faulty)


@pytest.mark.timeout(900)
def test_b_sigkill_during_live_traffic_across_due_instants(
    clean_small: tuple[Played, Played], tmp_path: Path
) -> None:
    clean, _ = clean_small
    # Three kills keep the small form short; the full form kills at every moment.
    hook = kill_across_due_instants(("opens", "delays", "timeouts"))
    faulty = run(tmp_path, clean.story, hook=hook)
    verdict(f"(b) SIGKILL across due instants, {clean.story.users} users", clean, faulty)


@pytest.mark.timeout(900)
def test_f_a_full_replay_from_the_earliest_offsets_at_a_later_now(
    clean_small: tuple[Played, Played],
) -> None:
    clean, again = clean_small
    verdict("(f) full replay: new group, empty state, later now", clean, again)


# --- the full forms (make chaos) ------------------------------------------------------


@pytest.mark.chaos_full
@pytest.mark.timeout(7200)
def test_a_full_sigkill_five_times_during_a_launch_to_50000_users(tmp_path: Path) -> None:
    story = Story(LARGE)
    clean = run(tmp_path / "clean", story)
    faulty = run(tmp_path / "faulty", story, hook=kill_during_launch(5))
    title = f"(a) SIGKILL x5 during a launch to {story.users} users"
    verdict(title, clean, faulty, with_model=True)


@pytest.mark.chaos_full
@pytest.mark.timeout(7200)
def test_b_full_sigkill_during_live_traffic(tmp_path: Path) -> None:
    story = Story(LIVE_LARGE, future=True)
    clean = run(tmp_path / "clean", story)
    faulty = run(tmp_path / "faulty", story, hook=kill_across_due_instants())
    title = f"(b) SIGKILL across due instants, {story.users} users"
    verdict(title, clean, faulty, with_model=True)


@pytest.mark.chaos_full
@pytest.mark.timeout(7200)
def test_full_clean_runs_agree_with_each_other_and_the_model(tmp_path: Path) -> None:
    """Determinism: two clean runs of the same inputs and ticks give the same outputs."""
    story = Story(LIVE_LARGE, future=True, launch_first=True)
    first = run(tmp_path / "first", story)
    second = run(tmp_path / "second", story)
    checks = [
        *model(story, first.outcome, "first"),
        *compare(first.outcome, second.outcome),
    ]
    assert_all(f"two clean runs of {story.users} users", checks, second.log)


@pytest.mark.chaos_full
@pytest.mark.timeout(7200)
def test_f_full_replay_of_a_large_run(tmp_path: Path) -> None:
    story = Story(LIVE_LARGE)
    clean, again = replayed(tmp_path, story)
    verdict(f"(f) full replay of {story.users} users", clean, again, with_model=True)


@pytest.mark.chaos_full
@pytest.mark.timeout(7200)
def test_d_one_two_one_engine_workers_on_eight_partitions(tmp_path: Path) -> None:
    story = Story(MEDIUM)
    clean = run(tmp_path / "clean", story, partitions=8)
    faulty = run(tmp_path / "faulty", story, partitions=8, hook=scale_out_and_in())
    title = f"(d) 1 -> 2 -> 1 engine workers, 8 partitions, {story.users} users"
    verdict(title, clean, faulty, with_model=True)


@pytest.mark.chaos_full
@pytest.mark.timeout(7200)
def test_e_sigstop_past_the_session_timeout_then_sigcont(tmp_path: Path) -> None:
    story = Story(MEDIUM)
    clean = run(tmp_path / "clean", story, partitions=4)
    faulty = run(tmp_path / "faulty", story, partitions=4, hook=pause_past_session_timeout())
    title = f"(e) SIGSTOP past the session timeout, {story.users} users"
    verdict(title, clean, faulty, with_model=True)


@pytest.mark.chaos_full
@pytest.mark.timeout(7200)
def test_g_definition_change_and_pause_resume_during_a_launch(tmp_path: Path) -> None:
    story = Story(MEDIUM)
    clean = run(tmp_path / "clean", story, hook=change_definitions(during_launch=False))
    faulty = run(tmp_path / "faulty", story, hook=change_definitions(during_launch=True))
    verdict(f"(g) a definition change and pause/resume during a launch, {story.users} users",
            clean, faulty, with_model=True)  # fmt: skip
