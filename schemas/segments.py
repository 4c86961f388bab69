"""Segment definitions: a tree of conditions joined by AND, OR and AND NOT.

Leaves are typed tag conditions, behaviour (event) conditions, "last performed"
conditions, message conditions and references to other segments. A condition whose
operand does not fit its type is refused when the definition is validated, with the
path of the offending node in the message.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, PrivateAttr, field_validator, model_validator

from schemas.values import CONTRACT, Name, Timestamp, VersionValue, parse_timestamp

SegmentId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]


class TagType(StrEnum):
    INTEGER = "integer"
    STRING = "string"
    LIST = "list"
    BOOLEAN = "boolean"
    DATE = "date"
    PRICE = "price"
    VERSION = "version"


class Op(StrEnum):
    EQ = "eq"
    NOTEQ = "noteq"
    IN = "in"
    NOTIN = "notin"
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"
    BETWEEN = "between"
    EXISTS = "exists"
    NOT_EXISTS = "not_exists"
    CONTAINS_ANY = "contains_any"
    CONTAINS_ALL = "contains_all"
    CONTAINS_NONE = "contains_none"
    WITHIN_LAST = "within_last"  # dates: within the last N days
    MORE_THAN_AGO = "more_than_ago"  # dates: more than N days ago


_ORDERED = {Op.EQ, Op.NOTEQ, Op.GT, Op.GTE, Op.LT, Op.LTE, Op.BETWEEN}
_PRESENCE = {Op.EXISTS, Op.NOT_EXISTS}
OPERATORS: dict[TagType, frozenset[Op]] = {
    TagType.INTEGER: frozenset(_ORDERED | _PRESENCE | {Op.IN, Op.NOTIN}),
    TagType.STRING: frozenset({Op.EQ, Op.NOTEQ, Op.IN, Op.NOTIN} | _PRESENCE),
    TagType.LIST: frozenset({Op.CONTAINS_ANY, Op.CONTAINS_ALL, Op.CONTAINS_NONE} | _PRESENCE),
    TagType.BOOLEAN: frozenset({Op.EQ, Op.NOTEQ} | _PRESENCE),
    TagType.DATE: frozenset(_ORDERED | _PRESENCE | {Op.WITHIN_LAST, Op.MORE_THAN_AGO}),
    TagType.PRICE: frozenset(_ORDERED | _PRESENCE),
    TagType.VERSION: frozenset(_ORDERED | _PRESENCE | {Op.IN, Op.NOTIN}),
}
"""Which operators each tag type takes."""


class DaysAgo(BaseModel):
    """A relative date operand: the instant N days before ``now``."""

    model_config = CONTRACT

    days_ago: int = Field(ge=0, le=36500)


class Price(BaseModel):
    model_config = CONTRACT

    amount: Decimal
    currency: str = Field(pattern=r"^[A-Z]{3}$")


Scalar = int | str | bool | datetime | DaysAgo | Price | tuple[int, int, int, int]
"""A normalised operand: int, str, bool, an instant or a relative date, a price, or a
version as four integers."""


def _one(tag_type: TagType, raw: Any) -> Scalar:
    """Normalise one operand of ``tag_type``; ValueError says what was expected."""
    if tag_type is TagType.INTEGER:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise ValueError(f"an integer tag needs an integer operand, got {raw!r}")
        return raw
    if tag_type in (TagType.STRING, TagType.LIST):
        if tag_type is TagType.LIST and isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        if not isinstance(raw, str):
            raise ValueError(f"a {tag_type} tag needs a string operand, got {raw!r}")
        return raw
    if tag_type is TagType.BOOLEAN:
        if not isinstance(raw, bool):
            raise ValueError(f"a boolean tag needs true or false, got {raw!r}")
        return raw
    if tag_type is TagType.DATE:
        if isinstance(raw, dict):
            return DaysAgo.model_validate(raw)
        if isinstance(raw, bool) or not isinstance(raw, str | int | float):
            raise ValueError(f"a date tag needs a date or {{'days_ago': N}}, got {raw!r}")
        return parse_timestamp(raw)
    if tag_type is TagType.PRICE:
        return Price.model_validate(raw)
    if not isinstance(raw, str):
        raise ValueError(f"a version tag needs a version string like '2.4.1', got {raw!r}")
    return VersionValue(type="version", value=raw).parts


def parse_operand(tag_type: TagType, op: Op, raw: Any) -> Any:
    """The normalised operand of ``op`` on a ``tag_type`` value, or ValueError."""
    if op not in OPERATORS[tag_type]:
        allowed = ", ".join(sorted(OPERATORS[tag_type]))
        raise ValueError(
            f"operator '{op}' does not apply to {tag_type} tags (use one of {allowed})"
        )
    if op in _PRESENCE:
        if raw is not None:
            raise ValueError(f"'{op}' takes no operand")
        return None
    if op in (Op.WITHIN_LAST, Op.MORE_THAN_AGO):
        if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
            raise ValueError(f"'{op}' needs a number of days (an integer >= 0), got {raw!r}")
        return raw
    if op in (Op.IN, Op.NOTIN, Op.CONTAINS_ANY, Op.CONTAINS_ALL, Op.CONTAINS_NONE):
        if not isinstance(raw, list) or not raw:
            raise ValueError(f"'{op}' needs a non-empty list, got {raw!r}")
        return tuple(_one(tag_type, item) for item in raw)
    if op is Op.BETWEEN:
        if not isinstance(raw, list) or len(raw) != 2:
            raise ValueError(f"'between' needs [low, high], got {raw!r}")
        low, high = (_one(tag_type, item) for item in raw)
        if isinstance(low, Price) and isinstance(high, Price) and low.currency != high.currency:
            raise ValueError("'between' prices must share a currency")
        return low, high
    return _one(tag_type, raw)


class Predicate(BaseModel):
    """``<name> <op> <value>`` on a typed value: a tag, or an event attribute."""

    model_config = CONTRACT

    type: TagType
    op: Op
    value: Any = None
    _operand: Any = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _operand_fits(self) -> Predicate:
        self._operand = parse_operand(self.type, self.op, self.value)
        return self

    @property
    def operand(self) -> Any:
        """The operand normalised for comparison (see ``Scalar``)."""
        return self._operand


class TagCondition(Predicate):
    kind: Literal["tag"] = "tag"
    tag: Name


class AttributeFilter(Predicate):
    attribute: Name


class Unit(StrEnum):
    MINUTES = "minutes"
    HOURS = "hours"
    DAYS = "days"


class Window(BaseModel):
    """When events count, relative to ``now`` (days follow the segment's time zone).

    - ``last``: within the last ``n`` units;
    - ``exactly_ago``: on the calendar day ``n`` days before today;
    - ``ago_or_more``: ``n`` or more days ago;
    - ``between_ago``: between ``n`` and ``m`` days ago (n < m);
    - ``between_dates``: from ``start`` to ``end``;
    - ``ever``: at any time.
    """

    model_config = CONTRACT

    kind: Literal["last", "exactly_ago", "ago_or_more", "between_ago", "between_dates", "ever"]
    n: int | None = Field(default=None, ge=0)
    m: int | None = Field(default=None, ge=0)
    unit: Unit = Unit.DAYS
    start: Timestamp | None = None
    end: Timestamp | None = None

    @model_validator(mode="after")
    def _fields_fit_kind(self) -> Window:
        needs = {
            "last": {"n"},
            "exactly_ago": {"n"},
            "ago_or_more": {"n"},
            "between_ago": {"n", "m"},
            "between_dates": {"start", "end"},
            "ever": set(),
        }[self.kind]
        given = {name for name in ("n", "m", "start", "end") if getattr(self, name) is not None}
        if given != needs:
            wanted = ", ".join(sorted(needs)) or "nothing"
            raise ValueError(f"a '{self.kind}' window takes {wanted}, got {sorted(given)}")
        if self.unit is not Unit.DAYS and self.kind != "last":
            raise ValueError(f"a '{self.kind}' window counts in days")
        if self.kind == "between_ago" and not (self.n or 0) < (self.m or 0):
            raise ValueError("'between_ago' needs n < m (between n and m days ago)")
        if self.start is not None and self.end is not None and self.start > self.end:
            raise ValueError("'between_dates' needs start <= end")
        return self


class CountOp(StrEnum):
    EQ = "eq"
    GTE = "gte"
    LTE = "lte"
    BETWEEN = "between"


class Count(BaseModel):
    """How many times: ``eq 0`` means never."""

    model_config = CONTRACT

    op: CountOp = CountOp.GTE
    value: int | tuple[int, int] = 1

    @model_validator(mode="after")
    def _value_fits_op(self) -> Count:
        pair = isinstance(self.value, tuple)
        if pair != (self.op is CountOp.BETWEEN):
            raise ValueError("'between' takes [low, high]; the other count operators one number")
        low, high = self.value if isinstance(self.value, tuple) else (self.value, self.value)
        if low < 0 or low > high:
            raise ValueError(f"count bounds must be >= 0 and ordered, got {self.value}")
        return self


class EventCondition(BaseModel):
    """Event E happened a number of times within a window, optionally filtered."""

    model_config = CONTRACT

    kind: Literal["event"] = "event"
    event: Name
    count: Count = Field(default_factory=Count)
    window: Window = Field(default_factory=lambda: Window(kind="ever"))
    filters: tuple[AttributeFilter, ...] = ()


class LastPerformedOp(StrEnum):
    BEFORE = "before"  # last performed before the operand (never performed: no match)
    AFTER = "after"
    WITHIN = "within"  # within the last n units


class LastPerformedCondition(BaseModel):
    model_config = CONTRACT

    kind: Literal["last_performed"] = "last_performed"
    event: Name
    op: LastPerformedOp
    date: Timestamp | DaysAgo | None = None
    n: int | None = Field(default=None, ge=0)
    unit: Unit = Unit.DAYS

    @model_validator(mode="after")
    def _operand_fits(self) -> LastPerformedCondition:
        if self.op is LastPerformedOp.WITHIN:
            if self.n is None or self.date is not None:
                raise ValueError("'within' takes n (and a unit), not a date")
        elif self.date is None or self.n is not None:
            raise ValueError(f"'{self.op}' takes a date or {{'days_ago': N}}, not n")
        return self


class MessageAction(StrEnum):
    RECEIVED = "received"  # delivered
    OPENED = "opened"
    CLICKED = "clicked"


class MessageCondition(BaseModel):
    """Received / opened / clicked (or, negated, not) a message of a journey, step or
    channel, within a window."""

    model_config = CONTRACT

    kind: Literal["message"] = "message"
    action: MessageAction
    negate: bool = False
    journey: str | None = None
    step: str | None = None
    channel: str | None = None
    window: Window = Field(default_factory=lambda: Window(kind="ever"))


ReachChannel = Literal["push", "web_push", "email", "sms", "whatsapp", "in_app"]
"""The channels (``schemas.journey_nodes.Channel``, which imports this module)."""


class ReachableCondition(BaseModel):
    """Reachable on a channel (``test: reachable``, the rule of
    ``engine.devices.reachable``: a live device of the channel in the device registry,
    or its address tag, and not opted out), or has a live device of the channel in the
    registry whatever the consent (``test: registered``)."""

    model_config = CONTRACT

    kind: Literal["reachable"] = "reachable"
    channel: ReachChannel
    test: Literal["reachable", "registered"] = "reachable"


class SegmentRef(BaseModel):
    model_config = CONTRACT

    kind: Literal["segment"] = "segment"
    segment: SegmentId


class All(BaseModel):
    """AND: every condition holds."""

    model_config = CONTRACT

    kind: Literal["and"] = "and"
    conditions: tuple[Condition, ...] = Field(min_length=1)


class Any_(BaseModel):
    """OR: at least one condition holds."""

    model_config = CONTRACT

    kind: Literal["or"] = "or"
    conditions: tuple[Condition, ...] = Field(min_length=1)


class AndNot(BaseModel):
    """AND NOT: ``include`` holds and ``exclude`` does not."""

    model_config = CONTRACT

    kind: Literal["and_not"] = "and_not"
    include: Condition
    exclude: Condition


Condition = Annotated[
    TagCondition
    | EventCondition
    | LastPerformedCondition
    | MessageCondition
    | ReachableCondition
    | SegmentRef
    | All
    | Any_
    | AndNot,
    Field(discriminator="kind"),
]

for _model in (All, Any_, AndNot):
    _model.model_rebuild()


class SegmentDefinition(BaseModel):
    """A named segment. ``version`` is given by the engine when the definition is applied."""

    model_config = CONTRACT

    id: SegmentId
    name: str = Field(min_length=1, max_length=256)
    description: str = ""
    timezone: str = "UTC"
    condition: Condition
    version: int = 0

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (use an IANA name like Europe/Paris)"
            ) from None
        return value


def references(condition: Condition) -> set[str]:
    """Ids of the segments a condition refers to, directly."""
    if isinstance(condition, SegmentRef):
        return {condition.segment}
    if isinstance(condition, All | Any_):
        return set().union(*(references(child) for child in condition.conditions))
    if isinstance(condition, AndNot):
        return references(condition.include) | references(condition.exclude)
    return set()


def reference_problems(definitions: dict[str, SegmentDefinition]) -> list[str]:
    """Unknown references and cycles among ``definitions``, as readable messages."""
    problems = [
        f"segment '{segment_id}' refers to unknown segment '{target}'"
        for segment_id, definition in sorted(definitions.items())
        for target in sorted(references(definition.condition))
        if target not in definitions
    ]
    visiting: list[str] = []
    done: set[str] = set()

    def visit(segment_id: str) -> None:
        if segment_id in done or segment_id not in definitions:
            return
        if segment_id in visiting:
            cycle = [*visiting[visiting.index(segment_id) :], segment_id]
            problems.append("reference cycle: " + " -> ".join(cycle))
            return
        visiting.append(segment_id)
        for target in sorted(references(definitions[segment_id].condition)):
            visit(target)
        visiting.pop()
        done.add(segment_id)

    for segment_id in sorted(definitions):
        visit(segment_id)
    return problems
