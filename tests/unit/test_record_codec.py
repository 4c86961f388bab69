"""The stored form of a user record: values written by earlier versions decode and
re-encode to the same bytes, and every record survives a round trip."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from engine import codec
from engine.devices import Registry
from engine.journeys.codec import encode
from engine.record import EMPTY_RECORD, JourneyPart, SegmentPart, UserRecord
from engine.segments.state import UserState
from tests.unit.test_journey_codec import states as journey_codec_states

# A stored value as the runtime has written it (segment state, memberships, offsets
# per input topic, next timer, journey state), in its stored key order.
STORED: dict[str, Any] = {
    "s": {
        "t": {"Country": "PT", "Time zone": "Europe/Lisbon"},
        "e": {"InAppPurchase": [[29700000, 2], [29700015, 1]]},
        "n": {"buyers": 1796947200000},
        "s": 1794355200000,
        "r": [123456789, -42],
    },
    "m": {"buyers": 3, "portugal": 1},
    "o": {"e": 17, "t": 4},
    "d": 1796947200000,
    "j": {
        "h": {"welcome": ["1-e1", 1794355200000, 1]},
        "in": {
            "welcome": {
                "v": 1,
                "r": "1-e1",
                "n": "wait",
                "s": 1,
                "k": "api",
                "w": "event",
                "d": 1796947200000,
            }
        },
    },
}


def test_a_stored_value_of_the_previous_version_reencodes_identically() -> None:
    record = codec.decode(STORED)
    assert record.members == {"buyers": 3, "portugal": 1}
    assert record.offsets == {"e": 17, "t": 4}
    assert record.timer == 1796947200000
    assert record.state.tags["Country"] == "PT"
    assert record.state.seen == 1794355200000
    assert record.journeys is not None
    assert record.journeys.state is not None
    assert "welcome" in record.journeys.state.visits
    assert orjson.dumps(codec.encode(record)) == orjson.dumps(STORED)


def test_a_value_without_journeys_stays_without() -> None:
    stored = {key: value for key, value in STORED.items() if key != "j"}
    assert orjson.dumps(codec.encode(codec.decode(stored))) == orjson.dumps(stored)


def test_a_value_whose_segment_state_was_decoded_reencodes_identically() -> None:
    record = codec.decode(STORED)
    changed = record._replace(segments=SegmentPart(record.state))
    assert orjson.dumps(codec.encode(changed)) == orjson.dumps(STORED)


def test_no_value_is_a_new_user() -> None:
    assert codec.decode(None) == EMPTY_RECORD
    assert codec.decode({}) == EMPTY_RECORD
    assert EMPTY_RECORD.state == UserState()
    # A new user swept by a journey (an API entry) keeps no segment state.
    assert codec.encode(EMPTY_RECORD) == {"s": None, "m": {}, "o": {}, "d": None}


text = st.characters(exclude_categories=("Cs",))  # JSON text: no lone surrogates
names = st.text(text, min_size=1, max_size=8)
ints = st.integers(min_value=-(2**62), max_value=2**62)
ms = st.integers(min_value=0, max_value=4_000_000_000_000)
tags = st.dictionaries(names, st.one_of(st.text(text, max_size=8), ints, st.booleans()))
counters = st.dictionaries(names, st.lists(st.lists(ms, min_size=2, max_size=2), max_size=3))
states = st.builds(
    UserState,
    tags=tags,
    events=counters,
    filtered=counters,
    messages=counters,
    seen=st.none() | ms,
    recent=st.lists(ints, max_size=8).map(tuple),
    timers=st.dictionaries(names, ms),
    channels=st.dictionaries(st.just("push"), st.integers(1, 7), max_size=1),
)
# Journey parts as a step leaves them (typed, not encoded yet); an empty state is
# stored as nothing, so it comes back as no part.
journey_states = st.none() | journey_codec_states.filter(
    lambda state: encode(state) is not None
).map(JourneyPart.of_state)
# Registries as ``engine.devices.apply`` leaves them; an empty one is stored as nothing.
registries = st.builds(
    Registry,
    devices=st.dictionaries(
        names,
        st.fixed_dictionaries({"kind": st.just("email"), "address": names}),
        min_size=1,
        max_size=2,
    ),
    since=st.dictionaries(names, ms, max_size=2),
    consent=st.dictionaries(st.sampled_from(["push", "sms"]), st.booleans(), max_size=1),
)
records = st.builds(
    UserRecord,
    segments=states.map(SegmentPart),
    members=st.dictionaries(names, st.integers(min_value=1, max_value=99)),
    offsets=st.dictionaries(st.sampled_from(["e", "t", "f", "a", "d"]), ms),
    timer=st.none() | ms,
    journeys=journey_states,
    devices=st.none(),  # test_every_registry_survives_storage
)


@given(records)
def test_every_record_survives_storage(record: UserRecord) -> None:
    stored = orjson.loads(orjson.dumps(codec.encode(record)))
    again = codec.decode(stored)
    assert again == record
    assert again.state == record.state
    assert orjson.dumps(codec.encode(again)) == orjson.dumps(codec.encode(record))


@given(registries)
def test_every_registry_survives_storage(registry: Registry) -> None:
    record = codec.decode(STORED)._replace(devices=registry)
    stored = orjson.loads(orjson.dumps(codec.encode(record)))
    again = codec.decode(stored)
    assert again.devices == registry
    assert orjson.dumps(codec.encode(again)) == orjson.dumps(codec.encode(record))
