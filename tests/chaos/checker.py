"""The invariants of a fault-injection scenario, each checked and printed PASS/FAIL with
its counts: a faulty run against the clean run of the same inputs (Flink's
SemanticsCheckMapper, Kafka's system tests), and every run against the model of what
the journeys must do with those inputs (a Jepsen-style checker over the whole
history, not a sample)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tests.chaos.harness import GRAPH, ONCE, STARTS, WEEKLY, WEEKLY_RUNS, Outcome, Story

SHOWN = 6  # differences printed per invariant


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'PASS' if self.ok else 'FAIL'} {self.name}: {self.detail}"


def _diff(clean: Mapping[Any, int], faulty: Mapping[Any, int]) -> list[str]:
    keys = sorted(set(clean) | set(faulty), key=str)
    return [
        f"{key}: clean {clean.get(key, 0)}, faulty {faulty.get(key, 0)}"
        for key in keys
        if clean.get(key, 0) != faulty.get(key, 0)
    ]


def _same(name: str, clean: Mapping[Any, int], faulty: Mapping[Any, int]) -> Check:
    differences = _diff(clean, faulty)
    total = f"clean {sum(clean.values())} in {len(clean)} groups, faulty {sum(faulty.values())}"
    if not differences:
        return Check(name, True, total)
    shown = "; ".join(differences[:SHOWN])
    more = f" (+{len(differences) - SHOWN} more)" if len(differences) > SHOWN else ""
    return Check(name, False, f"{total}; {len(differences)} differ: {shown}{more}")


def compare(clean: Outcome, faulty: Outcome) -> list[Check]:
    """A faulty run against the clean run of the same inputs."""
    missing = clean.command_ids - faulty.command_ids
    extra = faulty.command_ids - clean.command_ids
    sample = sorted(missing)[:3] + sorted(extra)[:3]
    return [
        Check(
            "send-command ids equal the clean run's",
            not missing and not extra,
            f"clean {len(clean.command_ids)}, faulty {len(faulty.command_ids)} "
            f"({faulty.command_items} items on the topic), {len(missing)} missing, "
            f"{len(extra)} extra" + (f", e.g. {sample}" if sample else ""),
        ),
        _same(
            "send_commands FINAL count",
            {"send_commands": clean.sends_final},
            {"send_commands": faulty.sends_final},
        ),
        _same(
            "journey_activity FINAL per journey, step, activity", clean.activity, faulty.activity
        ),
        _same("journey edges FINAL (journey_edge_stats)", clean.edges, faulty.edges),
        _same(
            "segment_memberships FINAL per segment, change", clean.memberships, faulty.memberships
        ),
        _same("segment_sizes (latest members)", clean.segment_sizes, faulty.segment_sizes),
    ]


def model(story: Story, outcome: Outcome, label: str) -> list[Check]:
    """One run against the model of the inputs, and its structure."""
    return [
        _same(f"[{label}] send commands per step match the model", story.expected_sends(),
              outcome.commands_by_step),
        _user_sends(story, outcome, label),
        _paths(story, outcome.paths, label)[1],
        *structure(story, outcome, label),
    ]  # fmt: skip


def structure(story: Story, outcome: Outcome, label: str) -> list[Check]:
    """What any run must satisfy, right or wrong about the inputs: one command id per
    step visit, memberships that alternate, paths along the graph's edges."""
    twice = {visit: n for visit, n in outcome.commands_per_visit.items() if n > 1}
    graph, _ = _paths(story, outcome.paths, label)
    return [
        Check(
            f"[{label}] each step visit has one command id",
            not twice,
            f"{len(outcome.commands_per_visit)} visits, {len(twice)} with several ids"
            + (f", e.g. {sorted(twice.items())[:3]}" if twice else ""),
        ),
        _alternation(outcome.membership_changes, label),
        graph,
    ]


def provider(received: Mapping[str, int], expected: Iterable[str], label: str) -> list[Check]:
    """Each idempotency key reaches the provider at most once, and every expected one
    does."""
    twice = {key: n for key, n in received.items() if n > 1}
    missing = set(expected) - set(received)
    return [
        Check(
            f"[{label}] each id reaches the provider at most once",
            not twice,
            f"{len(received)} keys, {sum(received.values())} calls, {len(twice)} more than "
            f"once" + (f", e.g. {sorted(twice.items())[:3]}" if twice else ""),
        ),
        Check(
            f"[{label}] every send command reached the provider",
            not missing,
            f"{len(missing)} missing" + (f", e.g. {sorted(missing)[:3]}" if missing else ""),
        ),
    ]


def _user_sends(story: Story, outcome: Outcome, label: str) -> Check:
    expected: Counter[tuple[str, str, str]] = Counter()
    for user in story.user_ids:
        for journey in (ONCE, WEEKLY):
            path = story.expected_path(journey, user) or []
            for step in path:
                if step in ("first-email", "second-email"):
                    expected[(user, journey, step)] += 1
                elif step == "news":
                    expected[(user, journey, step)] += len(WEEKLY_RUNS)
    differences = _diff(expected, outcome.commands_per_user)
    return Check(
        f"[{label}] each user's send commands per step match the model",
        not differences,
        f"{len(differences)} (user, journey, step) differ"
        + (
            f", e.g. {[d.replace('clean', 'model') for d in differences[:3]]}"
            if differences
            else ""
        ),
    )


def _alternation(changes: list[tuple[str, str, list[str]]], label: str) -> Check:
    bad = [
        (segment, user, sequence)
        for segment, user, sequence in changes
        if any(
            change != ("entered" if n % 2 == 0 else "exited") for n, change in enumerate(sequence)
        )
    ]
    return Check(
        f"[{label}] every user's membership changes alternate entered/exited",
        not bad,
        f"{len(changes)} (segment, user) histories, {len(bad)} broken"
        + (f", e.g. {bad[:3]}" if bad else ""),
    )


def _paths(
    story: Story, paths: list[tuple[str, str, str, list[list[str]]]], label: str
) -> list[Check]:
    off_graph: list[str] = []
    off_model: list[str] = []
    runs: Counter[tuple[str, str]] = Counter()
    for journey, run, user, rows in paths:
        runs[(journey, user)] += 1
        graph = GRAPH.get(journey, {})
        entered: list[str] = []
        outputs: dict[str, str] = {}
        for step, activity, detail in rows:
            if activity != "entered":
                continue
            if detail == "journey":
                if step != STARTS.get(journey):
                    off_graph.append(f"{journey}/{run}/{user}: starts at {step}")
            else:
                source, _, output = detail.partition(".")
                if graph.get((source, output)) != step:
                    off_graph.append(f"{journey}/{run}/{user}: edge {detail} -> {step}")
                outputs[source] = output
            entered.append(step)
        for source in outputs:
            if source not in entered:
                off_graph.append(f"{journey}/{run}/{user}: left {source} without entering it")
        if len(entered) != len(set(entered)):
            off_graph.append(f"{journey}/{run}/{user}: a step entered twice {entered}")
        activities = Counter(activity for _, activity, _ in rows)
        expected = story.expected_path(journey, user)
        if expected is None:
            off_model.append(f"{journey}/{run}/{user}: entered, the model says never")
            continue
        if set(entered) != set(expected) or activities["exited"] != 1 or activities["dropped"]:
            off_model.append(
                f"{journey}/{run}/{user}: steps {entered}, {dict(activities)}; model {expected}"
            )
        elif journey == ONCE and outputs != story.expected_outputs(user):
            off_model.append(
                f"{journey}/{run}/{user}: took {outputs}, model {story.expected_outputs(user)} "
                f"({story.fate(user)})"
            )
    for user in story.user_ids:
        want = {ONCE: 1, WEEKLY: len(WEEKLY_RUNS) if story.vip(user) else 0}
        for journey, count in want.items():
            if runs[(journey, user)] != count:
                off_model.append(f"{journey}/{user}: {runs[(journey, user)]} runs, model {count}")
    return [
        Check(
            f"[{label}] every user's journey path follows the graph",
            not off_graph,
            f"{len(paths)} paths, {len(off_graph)} off the graph"
            + (f", e.g. {off_graph[:3]}" if off_graph else ""),
        ),
        Check(
            f"[{label}] every user's journey path matches the model of the inputs",
            not off_model,
            f"{len(paths)} paths, {len(off_model)} differ"
            + (f", e.g. {off_model[:3]}" if off_model else ""),
        ),
    ]


def report(title: str, checks: list[Check], log: Iterable[str] = ()) -> str:
    lines = [f"== {title}", *(check.line() for check in checks)]
    faults = list(log)
    if faults:
        lines.append("-- faults: " + " | ".join(faults))
    return "\n".join(lines)


def assert_all(title: str, checks: list[Check], log: Iterable[str] = ()) -> None:
    text = report(title, checks, log)
    print(text)
    failed = [check for check in checks if not check.ok]
    assert not failed, f"{len(failed)} of {len(checks)} invariants failed\n{text}"
