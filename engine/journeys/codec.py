"""A user's journey state as it is stored: plain JSON with compact keys, in the same
value as their segment state. Only this module knows the keys.

- ``in``: journey id -> the visit in progress: version ``v``, run ``r``, node ``n``,
  steps taken ``s``, entry properties ``p`` (left out when empty), entry kind ``k``,
  what is awaited ``w``, the command awaiting an open ``c``, due instant ``d`` (ms), an
  open seen while paused ``o`` (ms), the branch an event took while paused ``e``
  (``[branch, ms]``), the branch an A/B split sent it down ``ab`` (``[variant, steps
  taken there]``), the message goals after exit are attributed to ``m`` (``[step,
  command, last sent (ms)]``, then ``1`` when that message was opened); fields with
  no value are left out;
- ``h``: journey id -> ``[last run, last entry (ms), entries]``;
- ``pe``: journey id -> ``[run, due (ms)]``;
- ``x``: instants of recent sends (ms);
- ``u``: channels the user opted out of;
- ``cw``: journey id -> the conversion window after exit ``[version, run, step,
  command, last message (ms), until (ms)]``, then ``[goals counted, opened]`` when
  either has a value.

Empty parts are left out, and a state with nothing in it is stored as nothing (None).
A value reads back as it was written, whatever the order of its keys.
"""

from __future__ import annotations

from collections.abc import Iterator, KeysView, Mapping
from typing import Any

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

JSON = dict[str, Any]


def decode(value: JSON | None) -> JourneyState | None:
    """The state stored as ``value`` (None: the user has no journey state)."""
    if not value:
        return None
    state = JourneyState()
    # Most users hold a few parts: the absent ones are not even looked at.
    for key, part in value.items():
        if key == "h":
            state.history = _History(part)
        elif key == "in":
            state.visits = {journey_id: _visit(visit) for journey_id, visit in part.items()}
        elif key == "x":
            state.sends = part  # shared: replaced whole when it changes
        elif key == "pe":
            state.pending = {
                journey_id: PendingEntry(*pending) for journey_id, pending in part.items()
            }
        elif key == "u":
            state.opted_out = part
        elif key == "cw":
            state.windows = {journey_id: _window(window) for journey_id, window in part.items()}
    return state


def encode(state: JourneyState | None) -> JSON | None:
    """``state`` as stored (None when there is nothing to store)."""
    if state is None:
        return None
    value: JSON = {}
    history = state.history
    if history:
        value["h"] = (
            history.stored  # as read: no step changed it
            if isinstance(history, _History)
            else {journey_id: list(entered) for journey_id, entered in history.items()}
        )
    if state.visits:
        value["in"] = {journey_id: _json(visit) for journey_id, visit in state.visits.items()}
    if state.pending:
        value["pe"] = {journey_id: list(pending) for journey_id, pending in state.pending.items()}
    if state.sends:
        value["x"] = state.sends
    if state.opted_out:
        value["u"] = state.opted_out
    if state.windows:
        value["cw"] = {
            journey_id: _window_json(window) for journey_id, window in state.windows.items()
        }
    return value or None


def _window(value: list[Any]) -> ConversionWindow:
    if len(value) == 6:
        return ConversionWindow(*value)
    version, run, step, command, last, until, done, opened = value
    return ConversionWindow(version, run, step, command, last, until, tuple(done), bool(opened))


def _window_json(window: ConversionWindow) -> list[Any]:
    value: list[Any] = [
        window.version,
        window.run,
        window.step,
        window.command,
        window.last,
        window.until,
    ]
    if window.done or window.opened:
        value += [list(window.done), int(window.opened)]
    return value


def _visit(value: JSON) -> Visit:
    seen = value.get("e")
    variant = value.get("ab")
    message = value.get("m")
    return Visit(
        value["v"],
        value["r"],
        value["n"],
        value["s"],
        value["k"],
        value.get("p", {}),
        value.get("w"),
        value.get("d"),
        value.get("c"),
        value.get("o"),
        SeenEvent(*seen) if seen is not None else None,
        Variant(*variant) if variant is not None else None,
        _message(message) if message is not None else None,
    )


def _message(value: list[Any]) -> LastMessage:
    step, command, at, *opened = value
    return LastMessage(step, command, at, bool(opened and opened[0]))


def _json(visit: Visit) -> JSON:
    value: JSON = {"v": visit.version, "r": visit.run, "n": visit.node, "s": visit.steps}
    if visit.properties:
        value["p"] = visit.properties
    value["k"] = visit.kind
    if visit.awaiting is not None:
        value["w"] = visit.awaiting
    if visit.command is not None:
        value["c"] = visit.command
    if visit.due is not None:
        value["d"] = visit.due
    if visit.opened_at is not None:
        value["o"] = visit.opened_at
    if visit.seen is not None:
        value["e"] = list(visit.seen)
    if visit.variant is not None:
        value["ab"] = list(visit.variant)
    message = visit.message
    if message is not None:
        value["m"] = (
            [message.step, message.command, message.at, 1]
            if message.opened
            else [message.step, message.command, message.at]
        )
    return value


class _History(Mapping[str, Entered]):
    """The entries as stored (journey id -> ``[run, at, entries]``), read on demand:
    it only grows, and most steps do not look at it. A step that enters replaces it
    with a dict."""

    __slots__ = ("stored",)

    def __init__(self, stored: dict[str, list[Any]]) -> None:
        self.stored = stored

    def __getitem__(self, journey_id: str) -> Entered:
        return Entered(*self.stored[journey_id])

    def get(self, journey_id: str, default: Any = None) -> Any:
        entered = self.stored.get(journey_id)
        return default if entered is None else Entered(*entered)

    def keys(self) -> KeysView[str]:
        return self.stored.keys()  # what ``{**history}`` reads, without a view in Python

    def __contains__(self, journey_id: object) -> bool:
        return journey_id in self.stored

    def __iter__(self) -> Iterator[str]:
        return iter(self.stored)

    def __len__(self) -> int:
        return len(self.stored)

    def __repr__(self) -> str:
        return repr(dict(self))
