"""The segment engine's step (engine/segments/logic.py) against every segment evaluated
from scratch, over random histories: a differential test.

Random histories of events (on time, late, future-dated, re-sent), tag updates and
message feedback for one user, with time moving on and the user's timer firing in
between (as the scenario tests fire it). After every step, the memberships ``step``
keeps must be what every segment evaluated from scratch with the plain evaluator
(evaluate.py ``holds``, not the verdicts the step uses) says; and they must still be
right at instants between the steps, up to a millisecond before the next one: a timer
that came late would show there.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.segments import (
    Input,
    JourneyFeedback,
    MembershipChange,
    SegmentIndex,
    StepResult,
    Tick,
    UserState,
    step,
)
from engine.segments.evaluate import holds
from engine.time import to_ms
from schemas.events import Event
from schemas.feedback import Feedback
from schemas.segment_language import parse
from schemas.segments import SegmentDefinition
from schemas.tags import TagUpdate

T0 = datetime(2024, 3, 8, 20, 0, tzinfo=UTC)  # New York moves its clocks on March 10
MS = timedelta(milliseconds=1)

SEGMENTS = {
    "buy2": ('E("Buy", count >= 2, last 3 days)', "UTC"),
    "no-open": ('E("ApplicationOpen", count = 0, last 2 days)', "Asia/Kolkata"),
    "open-90m": ('E("ApplicationOpen", count >= 1, last 90 minutes)', "UTC"),
    "screen-2d": ('E("Screen", count >= 1, exactly 2 days ago)', "America/New_York"),
    "screen-few": ('E("Screen", count between 1 and 2, between 1 and 3 days ago)', "Asia/Kolkata"),
    "screen-old": ('E("Screen", count >= 2, 2 or more days ago)', "America/New_York"),
    "screen-max": ('E("Screen", count <= 2, last 1 day)', "UTC"),
    "screen-0-3": ('E("Screen", count between 0 and 3, last 20 hours)', "Asia/Kathmandu"),
    "screen-eq": ('E("Screen", count = 2, last 2 days)', "UTC"),
    "active": ('L("ApplicationOpen", within, 6 hours)', "UTC"),
    "lapsed": ('L("ApplicationOpen", before, days_ago(1))', "UTC"),
    "bought-lately": ('L("Buy", after, days_ago(2))', "UTC"),
    "dear": ('E("Buy", count >= 1, last 2 days, where A("price", gte, price(10, "EUR")))', "UTC"),
    "march-buy": (
        'E("Buy", count >= 1, between date("2024-03-09T07:05:00Z") and date("2024-03-11"))',
        "UTC",
    ),
    "opened": ('M(opened, channel "push", last 2 days)', "UTC"),
    "ignored": (
        'M(received, journey "welcome", last 2 days)'
        ' * M(not opened, journey "welcome", last 2 days)',
        "Asia/Kolkata",
    ),
    "hindi": ('T("Language", eq, "hi")', "UTC"),
    "recent-open": ('T("Last Application Open", within_last, 1)', "UTC"),
    "paid": ('T("Plan", eq, "paid")', "UTC"),
    "hindi-buyers": ('S("hindi") * S("buy2")', "UTC"),
    "active-not-buying": ('S("active") - S("buy2")', "UTC"),
    "engaged": ('S("opened") + S("screen-2d") + E("Buy", count >= 1, last 1 day)', "UTC"),
    "paid-quiet": ('S("paid") - S("no-open")', "UTC"),
    "lapsed-or-max": ('S("lapsed") + S("screen-max")', "UTC"),
    "deep": ('S("engaged") * S("open-90m")', "Asia/Kolkata"),
}

DEFINITIONS = {
    segment_id: SegmentDefinition(
        id=segment_id, name=segment_id, timezone=zone, condition=parse(text), version=1
    )
    for segment_id, (text, zone) in SEGMENTS.items()
}
INDEX = SegmentIndex.build(DEFINITIONS)
ZONES = {segment_id: ZoneInfo(zone) for segment_id, (_, zone) in SEGMENTS.items()}


def truth(state: UserState, at: datetime) -> dict[str, int]:
    """Every segment evaluated from scratch at ``at``, referred segments first."""
    found: dict[str, int] = {}
    instant = to_ms(at)
    for segment_id in INDEX.order:
        definition = DEFINITIONS[segment_id]
        if holds(definition.condition, state, instant, ZONES[segment_id], found.__contains__):
            found[segment_id] = definition.version
    return found


@dataclasses.dataclass
class Run:
    """One user: inputs at the clock, the user's timer fired when the clock passes it,
    each step checked against ``truth``."""

    clock: datetime = T0
    now: datetime = T0
    """The instant of the last step."""
    state: UserState = dataclasses.field(default_factory=UserState)
    memberships: dict[str, int] = dataclasses.field(default_factory=dict)
    timer: datetime | None = None
    log: list[MembershipChange] = dataclasses.field(default_factory=list)
    steps: int = 0

    def take(self, result: StepResult) -> None:
        # Stored as JSON, as the agent stores it.
        self.state = UserState.from_json(orjson.loads(orjson.dumps(result.state.to_json())))
        self.memberships = dict(result.memberships)
        self.timer = result.next_timer
        self.log += result.changes
        self.steps += 1
        assert self.memberships == truth(self.state, self.now), self.now

    def send(self, item: Input, at: datetime) -> None:
        if self.steps:
            # Nothing changed since the last step, up to a millisecond before a timer.
            end = at - MS if isinstance(item, Tick) else at
            for probe in (self.now + (end - self.now) * part / 4 for part in range(1, 5)):
                if probe >= self.now:
                    assert self.memberships == truth(self.state, probe), probe
        self.now = at
        self.take(step(INDEX, DEFINITIONS, self.state, self.memberships, item, at))

    def advance(self, to: datetime) -> None:
        while self.timer is not None and self.timer <= to:
            self.send(Tick(), max(self.timer, self.now))
        self.clock = to

    def input(self, make: Make) -> None:
        self.send(make(self.clock), self.clock)


# --- random histories ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Make:
    """An input, made at the instant it is sent."""

    kind: str
    name: str = ""
    shift: timedelta = timedelta(0)
    values: tuple[tuple[str, Any], ...] = ()
    number: int = 0

    def __call__(self, now: datetime) -> Input:
        values = dict(self.values)
        if self.kind == "event":
            return Event.model_validate(
                {
                    "user_id": "u",
                    "name": self.name,
                    "timestamp": now + self.shift,
                    "attributes": values,
                }
            )
        if self.kind in ("set", "unset"):
            tags = list(values) if self.kind == "unset" else values
            return TagUpdate.model_validate(
                {"user_id": "u", "op": self.kind, "tags": tags, "timestamp": now}
            )
        item = Feedback.model_validate(
            {
                "command_id": f"cmd-{self.number}",
                "user_id": "u",
                "status": self.name,
                "timestamp": now,
                "channel": values["channel"],
            }
        )
        return JourneyFeedback(item, values["journey"], "s1")


def event(name: str, shift: timedelta, attributes: dict[str, Any]) -> Make:
    return Make("event", name, shift, tuple(attributes.items()))


GAPS = st.sampled_from(
    [
        timedelta(0),
        MS,
        timedelta(seconds=20),
        timedelta(minutes=7),
        timedelta(minutes=50),
        timedelta(hours=3),
        timedelta(hours=11),
        timedelta(days=1),
        timedelta(days=2, hours=5),
    ]
)
SHIFTS = st.sampled_from(
    [timedelta(0)] * 6
    + [-timedelta(minutes=40), -timedelta(hours=20), -timedelta(days=3), timedelta(hours=30)]
)


@st.composite
def inputs(draw: st.DrawFn) -> Make:
    kind = draw(st.sampled_from(["event"] * 6 + ["tags", "feedback", "feedback"]))
    number = draw(st.integers(0, 1_000_000))
    if kind == "event":
        name = draw(st.sampled_from(["Buy", "Screen", "ApplicationOpen", "Other"]))
        attributes: dict[str, Any] = {}
        if name == "Buy":
            price = draw(st.sampled_from(["5", "15"]))
            attributes["price"] = {"type": "price", "amount": price, "currency": "EUR"}
        if draw(st.booleans()) and draw(st.booleans()):
            attributes["language"] = draw(st.sampled_from(["hi", "pt"]))
        # Distinct content, so a distinct derived id, unless drawn to be a re-send.
        if draw(st.integers(0, 9)) != 0:
            attributes["n"] = number
        return event(name, draw(SHIFTS), attributes)
    if kind == "tags":
        tag = draw(st.sampled_from(["Plan", "Language"]))
        return Make(draw(st.sampled_from(["set", "unset"])), values=((tag, "paid"),))
    status = draw(st.sampled_from(["delivered", "opened", "clicked", "bounced"]))
    channel = draw(st.sampled_from(["push", "email"]))
    journey = draw(st.sampled_from(["welcome", None]))
    return Make(
        "feedback", status, values=(("channel", channel), ("journey", journey)), number=number
    )


HISTORIES = st.lists(st.tuples(GAPS, inputs()), min_size=1, max_size=40)


@settings(max_examples=300, deadline=None)
@given(history=HISTORIES)
def test_memberships_are_those_of_every_segment_evaluated_from_scratch(
    history: list[tuple[timedelta, Make]],
) -> None:
    run = Run()
    for gap, make in history:
        run.advance(run.clock + gap)
        run.input(make)
    run.advance(run.clock + timedelta(days=5))  # then time goes on with no input
    assert run.timer is None or run.timer > run.clock


def test_a_full_tick_changes_nothing_after_any_step() -> None:
    """Every segment evaluated by the step's own means (``Tick(full=True)``) agrees
    with what the steps kept, along a history of every kind of input."""
    run = Run()
    history = [
        event("ApplicationOpen", timedelta(0), {"language": "hi"}),
        event("Buy", timedelta(0), {"price": {"type": "price", "amount": "15", "currency": "EUR"}}),
        event("Screen", -timedelta(hours=20), {}),
        Make("set", values=(("Plan", "paid"),)),
        Make("feedback", "opened", values=(("channel", "push"), ("journey", "welcome"))),
        event("Buy", timedelta(hours=30), {}),
    ]
    for number, make in enumerate(history):
        run.advance(run.clock + timedelta(hours=7 * number))
        run.input(make)
        full = step(INDEX, DEFINITIONS, run.state, run.memberships, Tick(full=True), run.now)
        assert (full.memberships, full.changes) == (run.memberships, ())
        assert full.state.timers == run.state.timers
