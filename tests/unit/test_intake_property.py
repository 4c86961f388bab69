"""Whatever a record holds, intake applies it or dead-letters it, exactly once, and
every dead letter can be produced (it fits the producer's request size)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from pydantic_core import from_json

from engine.codecs import InputCodec
from engine.intake import Source, intake
from schemas import DeadLetter, Event, Feedback, TagUpdate
from schemas.commands import SendCommand

NOW = datetime(2024, 5, 1, 10, tzinfo=UTC)
LIMIT = 2048
PRODUCER_LIMIT = LIMIT + 65536  # what the app gives its producer (worker/app.py)

GOOD: dict[type[BaseModel], dict[str, Any]] = {
    Event: {"user_id": "u1", "name": "page_view", "timestamp": 0},
    TagUpdate: {"user_id": "u1", "op": "set", "tags": {"Email": "a@b.c"}, "timestamp": 0},
    Feedback: {"command_id": "c", "user_id": "u1", "status": "opened", "timestamp": 0},
    SendCommand: {
        "command_id": "j:1:r:s:1:0123456789abcdef",
        "user_id": "u1",
        "channel": "email",
        "preset": "hello",
        "journey_id": "j",
        "journey_version": 1,
        "run": "r",
        "step": "s",
        "visit": 1,
        "at": "2026-12-10T08:00:00Z",
    },
}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["2024-05-01T10:00:00Z", "set", "increment", "opened", "u1"]),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["user_id", "name", "timestamp", "tags", "op", "status", "x"])
            | st.text(max_size=8),
            inner,
            max_size=5,
        )
    ),
    max_leaves=12,
)


def _items(model: type[BaseModel]) -> st.SearchStrategy[Any]:
    good = GOOD[model]
    mutated = st.builds(
        lambda base, extra: {**base, **extra},
        st.just(good),
        st.dictionaries(st.sampled_from([*good, "extra"]), json_values, max_size=2),
    )
    return st.one_of(st.just(good), mutated, json_values)


def _dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):  # integers over 64 bits and the like
        return repr(value).encode("utf-8", "surrogatepass")


def records(model: type[BaseModel]) -> st.SearchStrategy[bytes | None]:
    return st.one_of(
        st.none(),
        st.binary(max_size=64),
        st.binary(min_size=LIMIT - 8, max_size=LIMIT + 64),
        st.builds(lambda n: b"[" + b" " * n + b"]", st.integers(0, 3 * LIMIT)),
        st.builds(lambda n: b"x" * n, st.integers(PRODUCER_LIMIT - LIMIT, PRODUCER_LIMIT + 9)),
        _items(model).map(_dumps),
        st.lists(_items(model), max_size=6).map(_dumps),
        st.lists(_items(model), max_size=6).map(lambda items: _dumps(items)[:-1]),
        st.text(max_size=40).map(lambda text: text.encode("utf-8", "surrogatepass")),
    )


# Large values are built from a drawn size: hypothesis cannot draw 64 KiB of bytes.
keys = st.one_of(
    st.none(), st.binary(max_size=32), st.integers(60_000, 70_000).map(lambda n: b"k" * n)
)
models = st.sampled_from([Event, TagUpdate, Feedback, SendCommand])


def _size(letter: DeadLetter) -> int:
    headers = sum(len(name) + len(value) for name, value in letter.headers())
    return len(letter.raw) + len(letter.key or b"") + headers


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(data=st.data(), model=models, key=keys, offset=st.integers(0, 2**40))
def test_every_record_is_applied_or_dead_lettered_exactly_once(
    data: st.DataObject, model: type[BaseModel], key: bytes | None, offset: int
) -> None:
    raw = data.draw(records(model))
    codec = InputCodec(model, LIMIT)
    result = intake(codec, raw, Source("reach.x", 3, offset, key), NOW)

    whole = [letter for letter in result.dead if letter.source_index is None]
    indexed = [letter.source_index for letter in result.dead if letter.source_index is not None]
    if whole:  # the record as a whole: one dead letter, nothing applied
        assert len(result.dead) == 1
        assert result.valid == []
    else:
        assert raw is not None
        parsed = from_json(raw) if raw.lstrip()[:1] == b"[" else [None]
        assert len(indexed) == len(set(indexed))
        assert len(result.valid) + len(indexed) == len(parsed)
    for letter in result.dead:
        assert _size(letter) <= PRODUCER_LIMIT
        assert DeadLetter.from_record(letter.raw, letter.key, letter.headers()).reason is (
            letter.reason
        )
