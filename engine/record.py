"""The per-user record: everything the engine keeps for one user, in one value, so one
input moves segments and journeys at once and a replay skips both.

Typed in memory; its stored form (compact keys) is ``engine.codec``'s business."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from engine.journeys.logic import State as JourneyState
from engine.segments.state import EMPTY, UserState

_UNREAD: Any = object()


class SegmentPart:
    """The segment state of a record: a ``UserState``, decoded from its stored JSON only
    when read, and encoded again only when it changed. A sweep over a partition's users
    (journey runs, stops) touches neither."""

    __slots__ = ("_state", "_stored")

    def __init__(self, state: UserState | None = None, stored: Any = _UNREAD) -> None:
        self._state = state
        self._stored = stored

    @classmethod
    def of_stored(cls, stored: Mapping[str, Any] | None) -> SegmentPart:
        """The part as stored (None: a user with no segment state yet)."""
        return cls(None, stored)

    @property
    def state(self) -> UserState:
        state = self._state
        if state is None:
            state = self._state = UserState.from_json(self._stored) if self._stored else EMPTY
        return state

    @property
    def tags(self) -> Mapping[str, Any]:
        if self._state is not None:
            return self._state.tags
        return UserState.stored_tags(self._stored)

    @property
    def timers(self) -> Mapping[str, int]:
        if self._state is not None:
            return self._state.timers
        return UserState.stored_timers(self._stored)

    def stored(self) -> Any:
        """The stored form: as loaded when it did not change, else encoded."""
        stored = self._stored
        if stored is _UNREAD:
            assert self._state is not None
            stored = self._stored = self._state.to_json()
        return stored

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SegmentPart):
            return NotImplemented
        return bool(self.stored() == other.stored())

    def __hash__(self) -> int:  # pragma: no cover - records are not hashed
        raise TypeError("unhashable type: 'SegmentPart'")

    def __repr__(self) -> str:
        return f"SegmentPart({self.state!r})"


NO_SEGMENTS = SegmentPart.of_stored(None)


class UserRecord(NamedTuple):
    """One user's state in the engine."""

    segments: SegmentPart
    """The segment state (tags, counts, timers per segment)."""
    members: Mapping[str, int]
    """Segment id -> the definition version the user is a member for."""
    offsets: Mapping[str, int]
    """Input topic (``e`` events, ``t`` tag updates, ``f`` feedback, ``a`` API entries)
    -> the offset of the last record applied: a replay skips what is already here."""
    timer: int | None
    """The user's next timer (ms): the earliest of the segments' and the journeys'. The
    timer queue is rebuilt from it on recovery."""
    journeys: JourneyState | None
    """The journey state (None: in no journey)."""

    @property
    def state(self) -> UserState:
        """The segment state, decoded."""
        return self.segments.state


EMPTY_RECORD = UserRecord(NO_SEGMENTS, {}, {}, None, None)
"""The record of a user the engine has not seen."""
