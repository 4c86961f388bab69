"""The stored form of a user's journey state: values written by the previous version
(plain dicts with compact keys) read back into the typed state and are written again
as they were; the step writes what the previous version wrote."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.journeys.codec import decode, encode
from engine.journeys.state import (
    ConversionWindow,
    Entered,
    JourneyState,
    LastMessage,
    PendingEntry,
    SeenEvent,
    Variant,
    Visit,
)
from tests.unit.journey_sim import T0, Sim, load_journeys

SEED = {journey.id: journey for journey in load_journeys("examples/seed-journeys.yaml")}
DAY = timedelta(days=1)
COMMAND = "reengage-once:1:1-r:first-email:1:b84b781c94abb08d"

# Stored values as the previous version wrote them (its step, these scenarios), to
# the byte; the scenarios below make each of them again.
WRITTEN_BEFORE: dict[str, bytes] = {
    "split": (
        b'{"h":{"reengage-once":["1-r",1796889600000,1]},"in":{"reengage-once":{"v":1,'
        b'"r":"1-r","n":"first-email","s":1,"k":"audience","w":"split","c":"'
        + COMMAND.encode()
        + b'","d":1797321600000}},"x":[1796889600000]}'
    ),
    "opened while paused": (
        b'{"h":{"reengage-once":["1-r",1796889600000,1]},"in":{"reengage-once":{"v":1,'
        b'"r":"1-r","n":"first-email","s":1,"k":"audience","w":"split","c":"'
        + COMMAND.encode()
        + b'","d":1797321600000,"o":1796889600000}},"x":[1796889600000]}'
    ),
    "left": b'{"h":{"reengage-once":["1-r",1796889600000,1]},"x":[1796889600000]}',
    "event wait": (
        b'{"h":{"j":["1-e1",1796889600000,1]},"in":{"j":{"v":1,"r":"1-e1","n":"wait","s":1,'
        b'"p":{"plan":"gold","n":3},"k":"api","w":"event","d":1797062400000}}}'
    ),
    "seen while paused": (
        b'{"h":{"j":["1-e1",1796889600000,1]},"in":{"j":{"v":1,"r":"1-e1","n":"wait","s":1,'
        b'"p":{"plan":"gold","n":3},"k":"api","w":"event","d":1797062400000,'
        b'"e":["came",1796889600000]}}}'
    ),
    "second wait": (
        b'{"h":{"j":["1-e1",1796889600000,1]},"in":{"j":{"v":1,"r":"1-e1","n":"d","s":2,'
        b'"p":{"plan":"gold","n":3},"k":"api","d":1796976000000,"w":"delay"}}}'
    ),
    "opted out": (
        b'{"h":{"j":["1-e1",1796889600000,1]},"in":{"j":{"v":1,"r":"1-e1","n":"d","s":2,'
        b'"p":{"plan":"gold","n":3},"k":"api","d":1796976000000,"w":"delay"}},"u":["sms"]}'
    ),
    "pending": b'{"pe":{"j":["20261212T0900",1796976000000]}}',
}
REORDERED = {"second wait", "opted out"}
"""Values the previous version wrote with keys in another order (in a visit's second
wait, its due instant before what it awaits): the same JSON object, written in the
codec's one order."""


@pytest.mark.parametrize("name", sorted(WRITTEN_BEFORE))
def test_a_value_written_before_reads_back_and_is_written_again_the_same(name: str) -> None:
    stored = orjson.loads(WRITTEN_BEFORE[name])
    state = decode(stored)
    assert state is not None
    assert encode(state) == stored
    written = orjson.dumps(encode(state))
    if name in REORDERED:
        assert orjson.loads(written) == stored
    else:
        assert written == WRITTEN_BEFORE[name]


def test_a_value_written_before_reads_as_typed_fields() -> None:
    state = decode(orjson.loads(WRITTEN_BEFORE["seen while paused"]))
    assert state == JourneyState(
        visits={
            "j": Visit(
                version=1,
                run="1-e1",
                node="wait",
                steps=1,
                kind="api",
                properties={"plan": "gold", "n": 3},
                awaiting="event",
                due=1797062400000,
                seen=SeenEvent("came", 1796889600000),
            )
        },
        history={"j": Entered("1-e1", 1796889600000, 1)},
    )
    state = decode(orjson.loads(WRITTEN_BEFORE["pending"]))
    assert state == JourneyState(pending={"j": PendingEntry("20261212T0900", 1796976000000)})


def _reengage_states() -> dict[str, JourneyState | None]:
    sim = Sim()
    sim.define(SEED["reengage-once"])
    sim.act("reengage-once", "launch")
    sim.user("u1", "inactive-7d")
    sim.run("reengage-once", "r")
    states = {"split": sim.users["u1"].state}
    sim.act("reengage-once", "pause")
    sim.feedback(sim.commands[0])
    states["opened while paused"] = sim.users["u1"].state
    sim.act("reengage-once", "resume")
    states["left"] = sim.users["u1"].state
    return states


def test_the_step_writes_what_the_previous_version_wrote() -> None:
    states = _reengage_states()
    states.update(_waits_states())
    assert set(states) == set(WRITTEN_BEFORE)
    for name, state in states.items():
        assert encode(state) == orjson.loads(WRITTEN_BEFORE[name]), name


def _waits_states() -> dict[str, JourneyState | None]:
    sim = Sim()
    sim.define(
        {
            "id": "j",
            "name": "j",
            "entries": [
                {"kind": "api"},
                {"kind": "audience", "segment": "s", "schedule": {"kind": "now"}},
            ],
            "start": "wait",
            "nodes": [
                {
                    "id": "wait",
                    "type": "wait_for_event",
                    "branches": [{"name": "came", "events": [{"event": "Open"}]}],
                    "timeout": {"amount": 2, "unit": "days"},
                    "next": {"came": "d", "timeout": "d"},
                },
                {
                    "id": "d",
                    "type": "delay",
                    "duration": {"amount": 1, "unit": "days"},
                    "next": {"next": "done"},
                },
                {"id": "done", "type": "exit"},
            ],
        }
    )
    sim.act("j", "launch")
    sim.enter("j", "u2", plan="gold", n=3)
    states = {"event wait": sim.users["u2"].state}
    sim.act("j", "pause")
    sim.event("u2", "Open")
    states["seen while paused"] = sim.users["u2"].state
    sim.act("j", "resume")
    states["second wait"] = sim.users["u2"].state
    sim.feedback({"command_id": "x", "user_id": "u2", "channel": "sms"}, "unsubscribed")
    states["opted out"] = sim.users["u2"].state
    sim.user("u3", "s")
    sim.run("j", "20261212T0900", T0 + DAY)
    states["pending"] = sim.users["u3"].state
    return states


# --- any value --------------------------------------------------------------------------

_ids = st.text("abcdefghij-_", min_size=1, max_size=8)
_ms = st.integers(0, 2**53)
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)
visits = st.builds(
    Visit,
    version=st.integers(1, 10**6),
    run=_ids,
    node=_ids,
    steps=st.integers(0, 1000),
    kind=st.sampled_from(["trigger", "audience", "api"]),
    properties=st.dictionaries(st.text(max_size=5), _json_values, max_size=3),
    awaiting=st.none() | st.sampled_from(["split", "delay", "event", "silent"]),
    due=st.none() | _ms,
    command=st.none() | _ids,
    opened_at=st.none() | _ms,
    seen=st.none() | st.builds(SeenEvent, _ids, _ms),
    variant=st.none() | st.builds(Variant, _ids, st.integers(0, 1000)),
    message=st.none() | st.builds(LastMessage, _ids, _ids, _ms, st.booleans()),
)
windows = st.builds(
    ConversionWindow,
    version=st.integers(1, 10**6),
    run=_ids,
    step=_ids,
    command=st.just("") | _ids,
    last=_ms,
    until=_ms,
    done=st.lists(_ids, max_size=3, unique=True).map(tuple),
    opened=st.booleans(),
)
states = st.builds(
    JourneyState,
    visits=st.dictionaries(_ids, visits, max_size=3),
    history=st.dictionaries(_ids, st.builds(Entered, _ids, _ms, st.integers(1, 10**6))),
    pending=st.dictionaries(_ids, st.builds(PendingEntry, _ids, _ms), max_size=2),
    sends=st.lists(_ms, max_size=4),
    opted_out=st.lists(_ids, max_size=3, unique=True),
    windows=st.dictionaries(_ids, windows, max_size=2),
)


@given(states)
def test_any_state_reads_back_as_it_was_written(state: JourneyState) -> None:
    stored = encode(state)
    assert decode(orjson.loads(orjson.dumps(stored))) == (state if state else None)


@given(states)
def test_any_stored_value_is_written_again_as_it_was(state: JourneyState) -> None:
    stored: Any = orjson.loads(orjson.dumps(encode(state)))
    assert orjson.dumps(encode(decode(stored))) == orjson.dumps(stored)


def test_nothing_is_stored_as_nothing() -> None:
    assert encode(JourneyState()) is None
    assert encode(None) is None
    assert decode(None) is None
    assert decode({}) is None


def test_the_ab_variant_is_stored_under_a_key_of_its_own() -> None:
    visit = Visit(1, "1-e1", "email", 3, "api", variant=Variant("b", 2))
    stored = encode(JourneyState(visits={"j": visit}))
    assert stored == {
        "in": {"j": {"v": 1, "r": "1-e1", "n": "email", "s": 3, "k": "api", "ab": ["b", 2]}}
    }
    state = decode(orjson.loads(orjson.dumps(stored)))
    assert state is not None
    assert state.visits["j"].variant == Variant("b", 2)
    assert state.visits["j"].copy().variant == Variant("b", 2)
    # A visit without one (and every value written before) has none.
    before = decode(orjson.loads(WRITTEN_BEFORE["split"]))
    assert before is not None
    assert before.visits["reengage-once"].variant is None
