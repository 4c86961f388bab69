"""Segment membership over simulated time (engine/segments/logic.py).

Each scenario is a table of steps: ``At`` moves the clock (firing the user's timer on
the way, as the agent does, with a ``Tick``), ``Send`` delivers an input at the current
time, ``Define`` / ``Delete`` change the definitions, and ``Expect`` checks membership.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from engine.segments import (
    Input,
    JourneyFeedback,
    MembershipChange,
    SegmentIndex,
    StepResult,
    Tick,
    UserState,
    on_definitions_changed,
    step,
)
from schemas.events import Event
from schemas.feedback import Feedback
from schemas.segment_language import parse
from schemas.segments import SegmentDefinition
from schemas.tags import TagUpdate

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
MS = timedelta(milliseconds=1)
DAYS = timedelta(days=1)
HOURS = timedelta(hours=1)


def segment(segment_id: str, text: str, tz: str = "UTC", version: int = 1) -> SegmentDefinition:
    """A definition whose condition is written in the segmentation language."""
    return SegmentDefinition(
        id=segment_id, name=segment_id, timezone=tz, condition=parse(text), version=version
    )


HINDI = segment("hindi", 'T("Language", eq, "Hindi")')
PORTUGAL = segment("portugal", 'T("Country", eq, "Portugal")')
LAPSED = segment("lapsed", 'L("ApplicationOpen", before, days_ago(7))')
BUYERS = segment("buyers", 'E("InAppPurchase", count >= 2, last 30 days)')


# --- the simulated agent --------------------------------------------------------------


@dataclass
class Sim:
    definitions: dict[str, SegmentDefinition]
    now: datetime = T0
    state: UserState = field(default_factory=UserState)
    memberships: dict[str, int] = field(default_factory=dict)
    timer: datetime | None = None
    log: list[MembershipChange] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.index = SegmentIndex.build(self.definitions)

    def take(self, result: StepResult) -> None:
        # The agent stores the state as JSON: go through it, as the agent would.
        self.state = UserState.from_json(orjson.loads(orjson.dumps(result.state.to_json())))
        self.memberships = dict(result.memberships)
        self.timer = result.next_timer
        self.log += result.changes

    def send(self, item: Input) -> None:
        self.take(step(self.index, self.definitions, self.state, self.memberships, item, self.now))

    def advance(self, to: datetime) -> None:
        while self.timer is not None and self.timer <= to:
            self.now = max(self.now, self.timer)
            self.send(Tick())
        self.now = to

    def redefine(self, definitions: dict[str, SegmentDefinition], changed: set[str]) -> None:
        self.definitions = definitions
        self.index = SegmentIndex.build(definitions)
        self.take(
            on_definitions_changed(
                self.index, definitions, self.state, self.memberships, changed, self.now
            )
        )


# --- steps ---------------------------------------------------------------------------


@dataclass(frozen=True)
class At:
    when: datetime

    def run(self, sim: Sim) -> None:
        sim.advance(self.when)


@dataclass(frozen=True)
class Send:
    make: Any  # (now) -> input

    def run(self, sim: Sim) -> None:
        sim.send(self.make(sim.now))


def event(name: str, **attributes: Any) -> Send:
    return Send(lambda now: Event(user_id="u1", name=name, timestamp=now, attributes=attributes))


def late_event(name: str, at: datetime, **attributes: Any) -> Send:
    return Send(lambda now: Event(user_id="u1", name=name, timestamp=at, attributes=attributes))


def tags(op: str = "set", **values: Any) -> Send:
    names: Any = list(values) if op == "unset" else values
    return Send(
        lambda now: TagUpdate.model_validate(
            {"user_id": "u1", "op": op, "tags": names, "timestamp": now}
        )
    )


def feedback(
    status: str, channel: str, journey: str | None = None, route: str | None = None
) -> Send:
    def make(now: datetime) -> JourneyFeedback:
        item = Feedback.model_validate(
            {
                "command_id": f"cmd-{journey}-{route}-{now.isoformat()}",
                "user_id": "u1",
                "status": status,
                "timestamp": now,
                "channel": channel,
            }
        )
        return JourneyFeedback(item, journey, route)

    return Send(make)


@dataclass(frozen=True)
class Expect:
    members: frozenset[str]

    def run(self, sim: Sim) -> None:
        assert set(sim.memberships) == self.members, sim.now


def expect(*members: str) -> Expect:
    return Expect(frozenset(members))


@dataclass(frozen=True)
class Changed:
    """The last change logged: a segment entered or exited, at an instant."""

    segment_id: str
    kind: str
    at: datetime

    def run(self, sim: Sim) -> None:
        last = sim.log[-1]
        assert (last.segment_id, last.kind, last.at) == (self.segment_id, self.kind, self.at)


@dataclass(frozen=True)
class Define:
    definitions: tuple[SegmentDefinition, ...]

    def run(self, sim: Sim) -> None:
        changed = {definition.id for definition in self.definitions}
        sim.redefine({**sim.definitions, **{d.id: d for d in self.definitions}}, changed)


@dataclass(frozen=True)
class Delete:
    segment_id: str

    def run(self, sim: Sim) -> None:
        remaining = {key: value for key, value in sim.definitions.items() if key != self.segment_id}
        sim.redefine(remaining, {self.segment_id})


@dataclass(frozen=True)
class TimerAt:
    when: datetime | None

    def run(self, sim: Sim) -> None:
        assert sim.timer == self.when


# --- scenarios ---------------------------------------------------------------------------

SCENARIOS: dict[str, tuple[list[SegmentDefinition], list[Any]]] = {
    "language is Hindi, country is Portugal": (
        [HINDI, PORTUGAL],
        [
            expect(),
            event("ApplicationOpen", language="Hindi"),
            expect("hindi"),
            tags(Country="Portugal"),
            expect("hindi", "portugal"),
            tags(Language="Portuguese"),
            expect("portugal"),
            tags("unset", Country=None),
            expect(),
        ],
    ),
    "has not opened the app for 7 days": (
        [LAPSED],
        [
            event("ApplicationOpen"),
            expect(),
            TimerAt(T0 + 7 * DAYS),
            At(T0 + 7 * DAYS - MS),
            expect(),
            At(T0 + 7 * DAYS),  # the timer fires: a Tick at exactly 7 days
            expect("lapsed"),
            Changed("lapsed", "entered", T0 + 7 * DAYS),
            TimerAt(None),
            At(T0 + 8 * DAYS),
            event("ApplicationOpen"),
            expect(),
            Changed("lapsed", "exited", T0 + 8 * DAYS),
            TimerAt(T0 + 15 * DAYS),
        ],
    ),
    "has not opened the app for 7 days, by the default tag": (
        [segment("lapsed", 'T("Last Application Open", more_than_ago, 7)')],
        [
            event("ApplicationOpen"),
            At(T0 + 7 * DAYS),
            expect(),  # more than 7 days: a millisecond later
            At(T0 + 7 * DAYS + MS),
            expect("lapsed"),
            Changed("lapsed", "entered", T0 + 7 * DAYS + MS),
        ],
    ),
    "the seed's inactive users, by count = 0, exactly 7 days after the last open": (
        [
            segment(
                "inactive-7d",
                'T("First Install", date, exists) * E("ApplicationOpen", count = 0, last 7 days)',
            ),
            segment("country-portugal", 'T("Country", eq, "PT")'),
            segment("buyers-2-in-30d", 'E("InAppPurchase", count >= 2, last 30 days)'),
            segment(
                "lapsed-portuguese",
                'S("country-portugal") * S("inactive-7d") - S("buyers-2-in-30d")',
            ),
        ],
        [
            At(T0 + timedelta(seconds=30)),  # not on a bucket boundary: still exact
            event("ApplicationOpen", country="PT"),
            expect("country-portugal"),
            At(T0 + 7 * DAYS + timedelta(seconds=30) - MS),
            expect("country-portugal"),
            At(T0 + 7 * DAYS + timedelta(seconds=30)),
            expect("country-portugal", "inactive-7d", "lapsed-portuguese"),
            Changed("lapsed-portuguese", "entered", T0 + 7 * DAYS + timedelta(seconds=30)),
            event("InAppPurchase"),
            At(T0 + 8 * DAYS),
            event("InAppPurchase"),
            expect("country-portugal", "inactive-7d", "buyers-2-in-30d"),
            event("ApplicationOpen"),
            expect("country-portugal", "buyers-2-in-30d"),
        ],
    ),
    "bought at least twice in the last 30 days": (
        [BUYERS],
        [
            event("InAppPurchase"),
            expect(),
            At(T0 + 10 * DAYS),
            event("InAppPurchase"),
            expect("buyers"),
            TimerAt(T0 + 30 * DAYS),  # the first purchase leaves the window
            At(T0 + 20 * DAYS),
            event("InAppPurchase"),
            TimerAt(T0 + 40 * DAYS),  # now three: the window holds two until day 40
            At(T0 + 40 * DAYS - MS),
            expect("buyers"),
            At(T0 + 40 * DAYS),
            expect(),
            Changed("buyers", "exited", T0 + 40 * DAYS),
        ],
    ),
    "a re-sent purchase counts once": (
        [BUYERS],
        [
            late_event("InAppPurchase", T0),
            late_event("InAppPurchase", T0),  # same content: same derived id
            expect(),
            late_event("InAppPurchase", T0 + MS),
            expect("buyers"),
        ],
    ),
    "exactly 3 days ago follows the segment's zone": (
        [
            segment("utc", 'E("Visit", exactly 3 days ago)'),
            segment("india", 'E("Visit", exactly 3 days ago)', tz="Asia/Kolkata"),
        ],
        [
            At(datetime(2024, 5, 1, 20, 0, tzinfo=UTC)),  # May 1 in UTC, May 2 01:30 in India
            event("Visit"),
            expect(),
            At(datetime(2024, 5, 4, 0, 0, tzinfo=UTC)),
            expect("utc"),
            At(datetime(2024, 5, 4, 18, 30, tzinfo=UTC)),  # midnight in India
            expect("utc", "india"),
            At(datetime(2024, 5, 5, 0, 0, tzinfo=UTC)),
            expect("india"),
            At(datetime(2024, 5, 5, 18, 30, tzinfo=UTC)),
            expect(),
            TimerAt(None),
        ],
    ),
    "a definition changes, then is deleted": (
        [HINDI],
        [
            tags(Language="Hindi", Country="India"),
            expect("hindi"),
            Define((segment("hindi", 'T("Language", eq, "hi")', version=2),)),
            expect(),
            Changed("hindi", "exited", T0),
            Define((segment("india", 'T("Country", eq, "India")'),)),
            expect("india"),
            Delete("india"),
            expect(),
            Changed("india", "exited", T0),
        ],
    ),
    "segments referring to segments": (
        [
            HINDI,
            BUYERS,
            segment("hindi-buyers", 'S("hindi") * S("buyers")'),
            segment("other-buyers", 'S("buyers") - S("hindi-buyers")'),
        ],
        [
            event("InAppPurchase"),
            At(T0 + HOURS),
            event("InAppPurchase"),
            expect("buyers", "other-buyers"),
            tags(Language="Hindi"),  # a tag change reaches the referrers of referrers
            expect("buyers", "hindi", "hindi-buyers"),
            At(T0 + 30 * DAYS),  # the purchases age out: the timer reaches referrers too
            expect("hindi"),
        ],
    ),
    "filters on event attributes": (
        [
            segment(
                "big-spenders",
                'E("InAppPurchase", count >= 2, last 7 days,'
                ' where A("price", gte, price(10, "EUR")) * A("sku", notin, ["trial"]))',
            )
        ],
        [
            event("InAppPurchase", price={"type": "price", "amount": "25", "currency": "EUR"}),
            event("InAppPurchase", price={"type": "price", "amount": "25", "currency": "USD"}),
            event("InAppPurchase", price={"type": "price", "amount": "5", "currency": "EUR"}),
            event(
                "InAppPurchase",
                price={"type": "price", "amount": "25", "currency": "EUR"},
                sku="trial",
            ),
            expect(),
            At(T0 + HOURS),
            event(
                "InAppPurchase",
                price={"type": "price", "amount": "10.00", "currency": "EUR"},
                sku="gems",
            ),
            expect("big-spenders"),
            At(T0 + 7 * DAYS),
            expect(),
        ],
    ),
    "message conditions": (
        [
            segment(
                "ignored-email",
                'M(received, channel "email", journey "welcome", last 5 days)'
                ' * M(not opened, channel "email", journey "welcome", last 5 days)',
            ),
            segment("push-clickers", 'M(clicked, channel "push")'),
        ],
        [
            feedback("delivered", "email", "welcome", "s1"),
            expect("ignored-email"),
            At(T0 + 2 * DAYS),
            feedback("opened", "email", "other-journey"),
            expect("ignored-email"),
            feedback("opened", "email", "welcome", "s1"),
            expect(),
            feedback("bounced", "push"),
            feedback("clicked", "push"),
            expect("push-clickers"),
        ],
    ),
    "default tags from events": (
        [
            segment(
                "new-android",
                'T("First Install", within_last, 3) * T("OS Version", gte, version("14"))',
            ),
        ],
        [
            event("DeviceRegistered", os_version="13.1"),
            expect(),
            event("ApplicationOpen", os_version="14.0.2"),
            expect("new-android"),
            At(T0 + 3 * DAYS + MS),
            expect(),
        ],
    ),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario(name: str) -> None:
    definitions, steps = SCENARIOS[name]
    sim = Sim({definition.id: definition for definition in definitions})
    for item in steps:
        item.run(sim)


def test_only_affected_segments_are_evaluated() -> None:
    index = SegmentIndex.build({d.id: d for d in (HINDI, PORTUGAL, LAPSED, BUYERS)})
    assert index.for_event("InAppPurchase") == ("buyers",)
    assert index.for_event("ScreenOpen") == ()
    assert index.for_event("ScreenOpen", ["Language"]) == ("hindi",)
    assert index.for_tags(["Country", "Plan"]) == ("portugal",)
    assert index.for_feedback() == ()


def test_a_sweep_on_tick_leaves_deleted_segments() -> None:
    index = SegmentIndex.build({"hindi": HINDI})
    result = step(index, {"hindi": HINDI}, UserState(), {"gone": 3}, Tick(full=True), T0)
    assert [(c.segment_id, c.kind, c.version) for c in result.changes] == [("gone", "exited", 3)]
    assert result.memberships == {}


# --- docs that run ---------------------------------------------------------------------------

DOCS = Path(__file__).resolve().parents[2] / "docs" / "segments.md"


def test_the_membership_docs_example_runs() -> None:
    text = DOCS.read_text(encoding="utf-8")
    section = text[text.index("## How membership is kept") :]
    section = section.split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)\n```", section, re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, str(DOCS), "exec"), {})
