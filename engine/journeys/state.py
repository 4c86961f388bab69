"""A user's journey state, typed: the visits in progress, the entries made, audience
entries waiting for the user's local time, recent sends and opt-outs, and the
conversion windows still open after a visit left.

The step moves a copy of the state it is given (``JourneyState.copy``) and returns it;
how the state is stored is ``engine.journeys.codec``'s business.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

Awaiting = Literal["split", "delay", "event", "silent"]
"""What a waiting visit waits for: the end of a message's open/ignore split (or an
open), a delay's end, an awaited event (or the wait's timeout), the end of silent
hours."""

EntryKind = Literal["trigger", "audience", "api"]


class SeenEvent(NamedTuple):
    """An awaited event seen while the journey was paused: the branch it takes on
    resume, and when it was seen (ms)."""

    branch: str
    at: int


class Variant(NamedTuple):
    """The branch an A/B split sent the visit down, and the visit's step count there:
    rows of later steps name it."""

    name: str
    step: int


class LastMessage(NamedTuple):
    """A visit's message a goal is attributed to: its last opened message, else its
    last sent one; and when the visit's last message was sent (ms). Kept only by
    journeys with a goal counted after exit."""

    step: str
    command: str
    at: int
    """When the visit's last message was sent (ms), opened or not."""
    opened: bool = False


class ConversionWindow(NamedTuple):
    """After a visit left a journey with goals counted after exit: the goals a matching
    event still counts, attributed to ``step`` (its message ``command``), until
    ``until``. For a user held out of the journey (``command`` empty): the goals of
    the holdout group, counted from the would-be entry."""

    version: int
    run: str
    step: str
    command: str
    last: int
    """The visit's last message (or the held-out entry), ms: each goal counts until
    its own ``after_exit`` after it."""
    until: int
    """When the window closes (ms): the longest ``after_exit`` after ``last``."""
    done: tuple[str, ...] = ()
    """Goals counted already: each counts once after exit."""
    opened: bool = False
    """Whether ``step`` is an opened message's (an open of another no longer moves
    the attribution to a message that was only sent)."""

    @property
    def held_out(self) -> bool:
        return not self.command


@dataclass(slots=True)
class Visit:
    """One user's visit of one journey, in progress."""

    version: int
    run: str
    node: str
    """The step the visit is at."""
    steps: int
    """Steps taken since the entry: with the run, the identity of each step's output."""
    kind: EntryKind
    """How the user entered."""
    properties: dict[str, Any] = field(default_factory=dict)
    """The entry's properties (JSON values), carried by every send command."""
    awaiting: Awaiting | None = None
    due: int | None = None
    """When the wait ends (ms); None while the visit moves."""
    command: str | None = None
    """The message command whose open ends a split."""
    opened_at: int | None = None
    """An open seen while the journey was paused (ms), decided on resume."""
    seen: SeenEvent | None = None
    """The first awaited event seen while the journey was paused."""
    variant: Variant | None = None
    """The last A/B split's branch (None: the visit passed none)."""
    message: LastMessage | None = None
    """The message goals after exit are attributed to (None: none sent, or the
    journey counts no goal after exit)."""

    def copy(self) -> Visit:
        return Visit(
            self.version,
            self.run,
            self.node,
            self.steps,
            self.kind,
            self.properties,
            self.awaiting,
            self.due,
            self.command,
            self.opened_at,
            self.seen,
            self.variant,
            self.message,
        )

    def moves_at(self) -> int | None:
        """When a waiting visit moves: its due instant, or an open or event seen
        earlier while its journey was paused (None: not waiting)."""
        due = self.due
        if due is None:
            return None
        if self.opened_at is not None and self.opened_at < due:
            due = self.opened_at
        if self.seen is not None and self.seen.at < due:
            due = self.seen.at
        return due

    def moving(self) -> None:
        """The wait is over (or there was none): forget what it was waiting for."""
        self.awaiting = self.due = self.command = self.opened_at = self.seen = None


class Entered(NamedTuple):
    """A user's entries of one journey, for re-entry rules."""

    run: str
    """The run of the last entry."""
    at: int
    """When the last entry was made (ms)."""
    entries: int


class PendingEntry(NamedTuple):
    """An audience run that reached the user before their local time: they enter (if
    still in the segment) at ``due``."""

    run: str
    due: int


@dataclass(slots=True)
class JourneyState:
    """Everything the journeys remember of one user.

    Only the visits change in place: the other parts are replaced whole when they
    change (``entered``, ``pend``, ``unpend``, ``open_window``, ``close_window``; new
    lists of sends and opt-outs), so a copy and the stored form may share them."""

    visits: dict[str, Visit] = field(default_factory=dict)
    """Journey id -> the visit in progress (at most one per journey)."""
    history: Mapping[str, Entered] = field(default_factory=dict)
    """Journey id -> the user's entries."""
    pending: Mapping[str, PendingEntry] = field(default_factory=dict)
    """Journey id -> an audience entry waiting for the user's local time."""
    sends: list[int] = field(default_factory=list)
    """Instants of recent sends of every journey (ms), for frequency caps."""
    opted_out: list[str] = field(default_factory=list)
    """Channels the user unsubscribed from."""
    windows: Mapping[str, ConversionWindow] = field(default_factory=dict)
    """Journey id -> the conversion window open after the user's last visit left."""

    def copy(self) -> JourneyState:
        """A copy the step may change."""
        return JourneyState(
            {journey_id: visit.copy() for journey_id, visit in self.visits.items()},
            self.history,
            self.pending,
            self.sends,
            self.opted_out,
            self.windows,
        )

    def entered(self, journey_id: str, entered: Entered) -> None:
        self.history = {**self.history, journey_id: entered}

    def pend(self, journey_id: str, entry: PendingEntry) -> None:
        self.pending = {**self.pending, journey_id: entry}

    def unpend(self, journey_id: str) -> PendingEntry | None:
        """Forget the waiting entry of ``journey_id``; returns it."""
        entry = self.pending.get(journey_id)
        if entry is not None:
            self.pending = {key: value for key, value in self.pending.items() if key != journey_id}
        return entry

    def open_window(self, journey_id: str, window: ConversionWindow) -> None:
        self.windows = {**self.windows, journey_id: window}

    def close_window(self, journey_id: str) -> None:
        if journey_id in self.windows:
            self.windows = {key: value for key, value in self.windows.items() if key != journey_id}

    def __bool__(self) -> bool:
        return bool(
            self.visits
            or self.history
            or self.pending
            or self.sends
            or self.opted_out
            or self.windows
        )
