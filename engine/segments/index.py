"""Which segments an input can affect, in which order to evaluate them, and what to
count. Built from the definitions, rebuilt whenever they change."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, timedelta
from zoneinfo import ZoneInfo

from engine.segments.counters import DEFAULT_HORIZON
from engine.segments.defaults import stored
from engine.segments.evaluate import (
    StateTest,
    ValueTest,
    compile_condition,
    compile_predicate,
)
from engine.segments.keys import Counted, MessageKey, condition_counts, filter_key
from engine.segments.timing import Change, Verdict, compile_change, compile_verdict
from engine.time import to_ms
from schemas.events import Event
from schemas.journey_nodes import ADDRESS_TAGS, OPT_OUT_TAG
from schemas.segments import (
    All,
    AndNot,
    Any_,
    AttributeFilter,
    Condition,
    EventCondition,
    LastPerformedCondition,
    MessageCondition,
    ReachableCondition,
    SegmentDefinition,
    TagCondition,
    reference_problems,
    references,
)


@dataclass(frozen=True, slots=True)
class FilterSignature:
    """The attribute filters of an event condition. They are decided when the event is
    counted: relative dates count back from the event's own time, and calendar days are
    UTC days (one counter serves every segment using the same filters)."""

    key: str
    event: str
    filters: tuple[AttributeFilter, ...]
    tests: tuple[tuple[str, ValueTest], ...] = field(init=False, compare=False, repr=False)
    """Each filter's attribute and compiled predicate."""

    def __post_init__(self) -> None:
        tests = tuple((item.attribute, compile_predicate(item)) for item in self.filters)
        object.__setattr__(self, "tests", tests)

    def matches(self, event: Event) -> bool:
        at = to_ms(event.timestamp)
        attributes = event.attributes
        for attribute, test in self.tests:
            raw = attributes.get(attribute)
            if not test(None if raw is None else stored(raw), at, UTC):
                return False
        return True


def _leaves(condition: Condition) -> Iterable[Condition]:
    if isinstance(condition, All | Any_):
        for child in condition.conditions:
            yield from _leaves(child)
    elif isinstance(condition, AndNot):
        yield from _leaves(condition.include)
        yield from _leaves(condition.exclude)
    else:
        yield condition


Plan = tuple[Verdict, ZoneInfo]


@dataclass(frozen=True, slots=True)
class SegmentIndex:
    order: tuple[str, ...]
    """Every segment, referred segments before their referrers."""
    by_event: Mapping[str, frozenset[str]]
    """Segments reading an event name (its counts or its last instant)."""
    by_tag: Mapping[str, frozenset[str]]
    by_message: frozenset[str]
    by_reach: frozenset[str]
    """Segments reading the device registry (reachability conditions)."""
    referrers: Mapping[str, frozenset[str]]
    """Segments that refer to a segment, directly or through others."""
    counted: Counted
    zones: Mapping[str, ZoneInfo]
    tests: Mapping[str, StateTest]
    """Each segment's compiled condition."""
    changes: Mapping[str, Change | None]
    """Each segment's compiled next change (None: time alone never changes it)."""
    horizon: timedelta = DEFAULT_HORIZON
    position: Mapping[str, int] = field(default_factory=dict)
    plans: Mapping[str, Plan] = field(default_factory=dict)
    """Each segment's compiled result and next change at once, and its zone."""
    _memo: dict[frozenset[str], tuple[str, ...]] = field(
        default_factory=dict, compare=False, repr=False
    )
    """``affected`` by its argument: inputs hit the same few sets of segments."""

    @classmethod
    def build(
        cls, definitions: Mapping[str, SegmentDefinition], horizon: timedelta = DEFAULT_HORIZON
    ) -> SegmentIndex:
        problems = reference_problems(dict(definitions))
        if problems:
            raise ValueError("; ".join(problems))
        by_event: dict[str, set[str]] = {}
        by_tag: dict[str, set[str]] = {}
        by_message: set[str] = set()
        by_reach: set[str] = set()
        direct_referrers: dict[str, set[str]] = {}
        filters: dict[str, dict[str, FilterSignature]] = {}
        messages: set[MessageKey] = set()
        for segment_id, definition in definitions.items():
            for target in references(definition.condition):
                direct_referrers.setdefault(target, set()).add(segment_id)
            for leaf in _leaves(definition.condition):
                if isinstance(leaf, TagCondition):
                    by_tag.setdefault(leaf.tag, set()).add(segment_id)
                elif isinstance(leaf, EventCondition | LastPerformedCondition):
                    by_event.setdefault(leaf.event, set()).add(segment_id)
                elif isinstance(leaf, MessageCondition):
                    by_message.add(segment_id)
                elif isinstance(leaf, ReachableCondition):
                    by_reach.add(segment_id)
                    if leaf.test == "reachable":  # also reads the opt-out and address tags
                        address = ADDRESS_TAGS.get(leaf.channel)  # type: ignore[call-overload]
                        for tag in (OPT_OUT_TAG, address):
                            if tag:
                                by_tag.setdefault(tag, set()).add(segment_id)
            for counted in condition_counts(definition.condition):
                if isinstance(counted, EventCondition) and counted.filters:
                    key = filter_key(counted.event, counted.filters)
                    signature = FilterSignature(key, counted.event, counted.filters)
                    filters.setdefault(counted.event, {})[key] = signature
                elif isinstance(counted, MessageCondition) and (counted.journey or counted.step):
                    messages.add(
                        MessageKey(counted.action, counted.channel, counted.journey, counted.step)
                    )
        order = _topological(definitions)
        tests = {key: compile_condition(d.condition) for key, d in definitions.items()}
        changes = {key: compile_change(d.condition) for key, d in definitions.items()}
        zones = {key: ZoneInfo(d.timezone) for key, d in definitions.items()}
        return cls(
            order=order,
            by_event={name: frozenset(ids) for name, ids in by_event.items()},
            by_tag={name: frozenset(ids) for name, ids in by_tag.items()},
            by_message=frozenset(by_message),
            by_reach=frozenset(by_reach),
            referrers={
                segment_id: frozenset(_closure(segment_id, direct_referrers))
                for segment_id in definitions
            },
            counted=Counted(
                filters={name: tuple(found.values()) for name, found in filters.items()},
                messages=tuple(sorted(messages, key=lambda item: item.key)),
            ),
            zones=zones,
            tests=tests,
            changes=changes,
            horizon=horizon,
            position={segment_id: index for index, segment_id in enumerate(order)},
            plans={
                key: (compile_verdict(d.condition), zones[key]) for key, d in definitions.items()
            },
        )

    def affected(self, direct: Iterable[str]) -> tuple[str, ...]:
        """``direct`` and their referrers, in evaluation order."""
        key = frozenset(direct)
        found = self._memo.get(key)
        if found is None:
            found = self._affected(key)
            if len(self._memo) > 4096:  # the sets are few; never let them grow unbounded
                self._memo.clear()
            self._memo[key] = found
        return found

    def _affected(self, direct: Iterable[str]) -> tuple[str, ...]:
        found: set[str] = set()
        for segment_id in direct:
            if segment_id in self.position and segment_id not in found:
                found.add(segment_id)
                found |= self.referrers[segment_id]
        return tuple(sorted(found, key=self.position.__getitem__))

    def for_event(self, name: str, changed_tags: Iterable[str] = ()) -> tuple[str, ...]:
        direct = self.by_event.get(name, frozenset())
        for tag in changed_tags:
            by_tag = self.by_tag.get(tag)
            if by_tag is not None:
                direct = direct | by_tag
        return self.affected(direct)

    def for_tags(self, names: Iterable[str]) -> tuple[str, ...]:
        direct: set[str] = set()
        for name in names:
            direct |= self.by_tag.get(name, frozenset())
        return self.affected(direct)

    def for_feedback(self) -> tuple[str, ...]:
        return self.affected(self.by_message)

    def for_devices(self) -> tuple[str, ...]:
        return self.affected(self.by_reach)


def _closure(segment_id: str, edges: Mapping[str, set[str]]) -> set[str]:
    found: set[str] = set()
    pending = list(edges.get(segment_id, ()))
    while pending:
        other = pending.pop()
        if other not in found:
            found.add(other)
            pending.extend(edges.get(other, ()))
    return found


def _topological(definitions: Mapping[str, SegmentDefinition]) -> tuple[str, ...]:
    order: list[str] = []
    done: set[str] = set()

    def visit(segment_id: str) -> None:
        if segment_id in done:
            return
        done.add(segment_id)  # no cycles: reference_problems refused them
        for target in sorted(references(definitions[segment_id].condition)):
            visit(target)
        order.append(segment_id)

    for segment_id in sorted(definitions):
        visit(segment_id)
    return tuple(order)
