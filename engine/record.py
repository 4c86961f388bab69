"""The per-user record: everything the engine keeps for one user, in one value, so one
input moves segments and journeys at once and a replay skips both.

Typed in memory; its stored form (compact keys) is ``engine.codec``'s business."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple, TypeVar

from engine.devices import Registry
from engine.journeys import codec as journey_codec
from engine.journeys.state import JourneyState
from engine.segments.state import EMPTY, UserState

_S = TypeVar("_S")

UNREAD: Any = object()
"""The stored form of a segment part not encoded yet."""


class _Part(tuple[_S | None, Any]):
    """A part of a record: (decoded state or None, stored form or ``UNREAD``). Two
    parts are equal when they store the same."""

    __slots__ = ()

    def stored(self) -> Any:
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, _Part)
        return bool(self.stored() == other.stored())

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    __hash__ = None  # type: ignore[assignment]


class SegmentPart(_Part[UserState]):
    """The segment state of a record: a ``UserState``, decoded from its stored JSON only
    when read, and encoded again only when it changed. A sweep over a partition's users
    (journey runs, stops) touches neither. A tuple of the decoded state (None: not
    decoded) and the stored form (``UNREAD``: not encoded); read ``state`` once per
    input (it decodes on each read)."""

    __slots__ = ()

    def __new__(cls, state: UserState | None = None, stored: Any = UNREAD) -> SegmentPart:
        return tuple.__new__(cls, (state, stored))

    @classmethod
    def of_stored(cls, stored: Mapping[str, Any] | None) -> SegmentPart:
        """The part as stored (None: a user with no segment state yet)."""
        return tuple.__new__(cls, (None, stored))

    @classmethod
    def of_state(cls, state: UserState) -> SegmentPart:
        """A new state, encoded when stored."""
        return tuple.__new__(cls, (state, UNREAD))

    @property
    def state(self) -> UserState:
        state, stored = self
        if state is not None:
            return state
        return UserState.from_json(stored) if stored else EMPTY

    @property
    def tags(self) -> Mapping[str, Any]:
        state, stored = self
        return state.tags if state is not None else UserState.stored_tags(stored)

    @property
    def timers(self) -> Mapping[str, int]:
        state, stored = self
        return state.timers if state is not None else UserState.stored_timers(stored)

    def stored(self) -> Any:
        """The stored form: as loaded when it did not change, else encoded."""
        state, stored = self
        if stored is UNREAD:
            assert state is not None
            return state.to_json()
        return stored

    def __repr__(self) -> str:
        return f"SegmentPart({self.state!r})"


NO_SEGMENTS = SegmentPart.of_stored(None)


class JourneyPart(_Part[JourneyState]):
    """The journey state of a record, as ``SegmentPart`` holds the segment state:
    decoded (``engine.journeys.codec``) only when read, encoded again only when a step
    changed it. A tuple of the decoded state (None: not decoded) and the stored form
    (``UNREAD``: not encoded)."""

    __slots__ = ()

    @classmethod
    def of_stored(cls, stored: Mapping[str, Any]) -> JourneyPart:
        return tuple.__new__(cls, (None, stored))

    @classmethod
    def of_state(cls, state: JourneyState) -> JourneyPart:
        return tuple.__new__(cls, (state, UNREAD))

    @property
    def state(self) -> JourneyState | None:
        """The state, decoded (read it once per input: it decodes on each read)."""
        state, stored = self
        return state if state is not None else journey_codec.decode(stored)

    def stored(self) -> Any:
        """The stored form: as loaded when no step changed it, else encoded."""
        state, stored = self
        return journey_codec.encode(state) if stored is UNREAD else stored

    def __repr__(self) -> str:
        return f"JourneyPart({self.state!r})"


class UserRecord(NamedTuple):
    """One user's state in the engine."""

    segments: SegmentPart
    """The segment state (tags, counts, timers per segment)."""
    members: Mapping[str, int]
    """Segment id -> the definition version the user is a member for."""
    offsets: Mapping[str, int]
    """Input topic (``e`` events, ``t`` tag updates, ``f`` feedback, ``a`` API entries,
    ``d`` device updates)
    -> the offset of the last record applied: a replay skips what is already here."""
    timer: int | None
    """The user's next timer (ms): the earliest of the segments' and the journeys'. The
    timer queue is rebuilt from it on recovery."""
    journeys: JourneyPart | None
    """The journey state (None: in no journey)."""
    devices: Registry | None = None
    """The device registry (``engine.devices``; None: no device and no word on any
    channel)."""

    @property
    def state(self) -> UserState:
        """The segment state, decoded."""
        return self.segments.state


EMPTY_RECORD = UserRecord(NO_SEGMENTS, {}, {}, None, None, None)
"""The record of a user the engine has not seen."""
