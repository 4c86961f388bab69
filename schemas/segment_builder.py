"""The segmentation language's parse tree built into the models of ``schemas.segments``
(``ConditionBuilder``): a model that refuses its fields, or a value that does not fit
its place, becomes a ``BuildProblem`` at the position of the text it came from."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, get_args

from lark import Token, Transformer, v_args
from pydantic import BaseModel, ValidationError

from schemas.segments import (
    All,
    AndNot,
    Any_,
    AttributeFilter,
    Condition,
    Count,
    CountOp,
    DaysAgo,
    EventCondition,
    LastPerformedCondition,
    LastPerformedOp,
    MessageAction,
    MessageCondition,
    Op,
    Price,
    ReachableCondition,
    ReachChannel,
    SegmentRef,
    TagCondition,
    TagType,
    Unit,
    Window,
)
from schemas.values import VersionValue, parse_timestamp


class _Where(Protocol):
    @property
    def line(self) -> int | None: ...

    @property
    def column(self) -> int | None: ...


class BuildProblem(Exception):
    """A semantic error found while building the models, with the node's position."""

    def __init__(self, message: str, where: _Where) -> None:
        super().__init__(message)
        self.message = message
        self.line = where.line or 1
        self.column = where.column or 1


@dataclass(frozen=True)
class _Literal:
    """An operand as written: ``kind`` is string, integer, decimal, boolean, date
    (date() or days_ago()), price or version; ``raw`` is the value given to the model."""

    kind: str
    raw: Any
    line: int
    column: int


@dataclass(frozen=True)
class _List:
    items: tuple[_Literal, ...]
    line: int
    column: int


@dataclass(frozen=True)
class _Predicate:
    type: TagType
    op: Op
    value: Any


@dataclass(frozen=True)
class _Duration:
    n: int
    unit: Unit


@dataclass(frozen=True)
class _Part:
    key: str
    value: Any
    line: int
    column: int


_Model = TypeVar("_Model", bound=BaseModel)

PRESENCE_OPS = frozenset({Op.EXISTS, Op.NOT_EXISTS})
_LIST_OPS = frozenset({Op.CONTAINS_ANY, Op.CONTAINS_ALL, Op.CONTAINS_NONE})
DAY_OPS = frozenset({Op.WITHIN_LAST, Op.MORE_THAN_AGO})
_KIND_TYPES = {
    "string": TagType.STRING,
    "integer": TagType.INTEGER,
    "boolean": TagType.BOOLEAN,
    "date": TagType.DATE,
    "price": TagType.PRICE,
    "version": TagType.VERSION,
}
_TYPED_KINDS = frozenset({"date", "price", "version"})
_UNITS = {
    "minute": Unit.MINUTES,
    "minutes": Unit.MINUTES,
    "hour": Unit.HOURS,
    "hours": Unit.HOURS,
    "day": Unit.DAYS,
    "days": Unit.DAYS,
}
NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


def inferred_type(op: Op, first_kind: str | None) -> TagType:
    """The tag type a predicate written without one gets (docs/segments.md)."""
    if op in _LIST_OPS:
        return TagType.LIST
    if op in DAY_OPS:
        return TagType.DATE
    if first_kind is None:
        return TagType.STRING
    return _KIND_TYPES.get(first_kind, TagType.STRING)


def _one_of(words: Iterable[str]) -> str:
    return ", ".join(sorted(words))


def _describe(error: ValidationError) -> str:
    """A pydantic error as one readable sentence."""
    parts = []
    for item in error.errors():
        message = str(item["msg"]).removeprefix("Value error, ").replace("\n", "; ")
        where = ".".join(str(step) for step in item["loc"])
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def _model(factory: Callable[..., _Model], where: _Where, **fields: Any) -> _Model:
    try:
        return factory(**fields)
    except ValidationError as error:
        raise BuildProblem(_describe(error), where) from None


def _text(token: Token) -> str:
    """The value of a string literal token (JSON escapes decoded)."""
    value: str = json.loads(token)
    return value


def _natural(token: Token) -> int:
    """A count or a number of units: a whole number >= 0."""
    if not re.fullmatch(r"-?[0-9]+", token) or int(token) < 0:
        raise BuildProblem(f"expected a whole number >= 0, got {token}", token)
    return int(token)


def _predicated(factory: Callable[..., _Model], meta: Any, key: str, children: list[Any]) -> _Model:
    """A tag condition or attribute filter: a name (under ``key``) and a predicate."""
    name, predicate = children
    fields = {key: _text(name), "type": predicate.type, "op": predicate.op}
    return _model(factory, meta, **fields, value=predicate.value)


def _group(factory: type[All] | type[Any_], conditions: list[Condition]) -> Condition:
    if len(conditions) == 1:
        return conditions[0]
    return factory(conditions=tuple(conditions))


@v_args(meta=True)
class ConditionBuilder(Transformer[Token, Any]):
    """Builds the models bottom-up; a model that refuses its fields becomes a BuildProblem
    at the position of the text it came from."""

    def start(self, meta: Any, children: list[Any]) -> Condition:
        condition: Condition = children[0]
        return condition

    def expr(self, meta: Any, children: list[Any]) -> Condition:
        # + collects children of one Any_; - closes what came before as its include.
        pending: list[Condition] = [children[0]]
        for operator, term in zip(children[1::2], children[2::2], strict=True):
            if operator == "+":
                pending.append(term)
            else:
                pending = [AndNot(include=_group(Any_, pending), exclude=term)]
        return _group(Any_, pending)

    def term(self, meta: Any, children: list[Condition]) -> Condition:
        return _group(All, children)

    def all_group(self, meta: Any, children: list[Condition]) -> All:
        return All(conditions=tuple(children))

    def any_group(self, meta: Any, children: list[Condition]) -> Any_:
        return Any_(conditions=tuple(children))

    # Tags and event attributes.

    def tag(self, meta: Any, children: list[Any]) -> TagCondition:
        return _predicated(TagCondition, meta, "tag", children)

    def attribute(self, meta: Any, children: list[Any]) -> AttributeFilter:
        return _predicated(AttributeFilter, meta, "attribute", children)

    def predicate(self, meta: Any, children: list[Any]) -> _Predicate:
        first, second, operand = children
        type_word, op_word = (None, first) if second is None else (first, second)
        explicit = None
        if type_word is not None:
            if type_word not in TagType.__members__.values():
                raise BuildProblem(
                    f"unknown type '{type_word}' (expected one of: {_one_of(TagType)})",
                    type_word,
                )
            explicit = TagType(type_word)
        if op_word not in Op.__members__.values():
            hint = (
                f"; '{op_word}' is a type, write an operator after it"
                if op_word in TagType.__members__.values()
                else ""
            )
            raise BuildProblem(
                f"unknown operator '{op_word}' (expected one of: {_one_of(Op)}){hint}", op_word
            )
        op = Op(op_word)
        items: tuple[_Literal, ...] = ()
        if isinstance(operand, _List):
            items = operand.items
        elif isinstance(operand, _Literal):
            items = (operand,)
        for item in items:
            if item.kind == "decimal":
                raise BuildProblem(
                    f"a decimal number is only an operand inside price(...), got {item.raw}", item
                )
        if operand is None and op not in PRESENCE_OPS:
            raise BuildProblem(f"'{op}' needs an operand", op_word)
        if op in DAY_OPS and items and items[0].kind != "integer":
            raise BuildProblem(f"'{op}' takes a number of days, e.g. {op}, 30", items[0])
        first_kind = items[0].kind if items else None
        tag_type = explicit or inferred_type(op, first_kind)
        for item in items:
            if item.kind in _TYPED_KINDS and _KIND_TYPES[item.kind] is not tag_type:
                raise BuildProblem(
                    f"a {item.kind} operand does not fit a {tag_type} condition", item
                )
        if isinstance(operand, _List):
            value: Any = [item.raw for item in operand.items]
        else:
            value = None if operand is None else operand.raw
        return _Predicate(type=tag_type, op=op, value=value)

    def array(self, meta: Any, children: list[Any]) -> _List:
        items = tuple(child for child in children if child is not None)
        return _List(items, meta.line, meta.column)

    def string(self, meta: Any, children: list[Token]) -> _Literal:
        return _Literal("string", _text(children[0]), meta.line, meta.column)

    def number(self, meta: Any, children: list[Token]) -> _Literal:
        token = children[0]
        if re.fullmatch(r"-?[0-9]+", token):
            return _Literal("integer", int(token), meta.line, meta.column)
        return _Literal("decimal", str(token), meta.line, meta.column)

    def boolean(self, meta: Any, children: list[Token]) -> _Literal:
        return _Literal("boolean", children[0] == "true", meta.line, meta.column)

    def date(self, meta: Any, children: list[Token]) -> _Literal:
        token = children[0]
        raw: str | int | float
        if token.type == "STRING":
            raw = _text(token)
        elif re.fullmatch(r"-?[0-9]+", token):
            raw = int(token)  # epoch milliseconds
        else:
            raw = float(token)
        try:
            parse_timestamp(raw)
        except ValidationError as error:
            raise BuildProblem(f"not a date: {_describe(error)}", meta) from None
        return _Literal("date", raw, meta.line, meta.column)

    def days_ago(self, meta: Any, children: list[Token]) -> _Literal:
        raw = {"days_ago": _natural(children[0])}
        _model(DaysAgo, meta, **raw)
        return _Literal("date", raw, meta.line, meta.column)

    def price(self, meta: Any, children: list[Token]) -> _Literal:
        amount, currency = children
        # The amount keeps its exact decimal text, as prices do in the JSON contracts.
        raw = {
            "amount": _text(amount) if amount.type == "STRING" else str(amount),
            "currency": _text(currency),
        }
        _model(Price, meta, **raw)
        return _Literal("price", raw, meta.line, meta.column)

    def version(self, meta: Any, children: list[Token]) -> _Literal:
        raw = _text(children[0])
        _model(VersionValue, meta, type="version", value=raw)
        return _Literal("version", raw, meta.line, meta.column)

    # Events: count, window, filters.

    def event(self, meta: Any, children: list[Any]) -> EventCondition:
        name, count, window, filters = children
        return _model(
            EventCondition,
            meta,
            event=_text(name),
            count=count if count is not None else Count(),
            window=window if window is not None else Window(kind="ever"),
            filters=filters or (),
        )

    def _count(self, meta: Any, op: CountOp, value: int | tuple[int, int]) -> Count:
        return _model(Count, meta, op=op, value=value)

    def count_eq(self, meta: Any, children: list[Token]) -> Count:
        return self._count(meta, CountOp.EQ, _natural(children[0]))

    def count_gte(self, meta: Any, children: list[Token]) -> Count:
        return self._count(meta, CountOp.GTE, _natural(children[0]))

    def count_lte(self, meta: Any, children: list[Token]) -> Count:
        return self._count(meta, CountOp.LTE, _natural(children[0]))

    def count_between(self, meta: Any, children: list[Token]) -> Count:
        low, high = (_natural(token) for token in children)
        return self._count(meta, CountOp.BETWEEN, (low, high))

    def filters(self, meta: Any, children: list[AttributeFilter]) -> tuple[AttributeFilter, ...]:
        return tuple(children)

    def unit(self, meta: Any, children: list[Token]) -> Unit:
        return _UNITS[children[0]]

    def last(self, meta: Any, children: list[Any]) -> Window:
        return _model(Window, meta, kind="last", n=_natural(children[0]), unit=children[1])

    def exactly_ago(self, meta: Any, children: list[Any]) -> Window:
        return _model(Window, meta, kind="exactly_ago", n=_natural(children[0]), unit=children[1])

    def ago_or_more(self, meta: Any, children: list[Any]) -> Window:
        return _model(Window, meta, kind="ago_or_more", n=_natural(children[0]), unit=children[1])

    def between_ago(self, meta: Any, children: list[Any]) -> Window:
        n, m, unit = _natural(children[0]), _natural(children[1]), children[2]
        return _model(Window, meta, kind="between_ago", n=n, m=m, unit=unit)

    def between_dates(self, meta: Any, children: list[_Literal]) -> Window:
        start, end = children
        return _model(Window, meta, kind="between_dates", start=start.raw, end=end.raw)

    def ever(self, meta: Any, children: list[Any]) -> Window:
        return Window(kind="ever")

    # Last performed, messages, segments.

    def duration(self, meta: Any, children: list[Any]) -> _Duration:
        return _Duration(_natural(children[0]), children[1])

    def last_performed(self, meta: Any, children: list[Any]) -> LastPerformedCondition:
        name, op_word, operand = children
        if op_word not in LastPerformedOp.__members__.values():
            raise BuildProblem(
                f"unknown operator '{op_word}' (expected one of: {_one_of(LastPerformedOp)})",
                op_word,
            )
        op = LastPerformedOp(op_word)
        fields: dict[str, Any]
        if op is LastPerformedOp.WITHIN:
            if not isinstance(operand, _Duration):
                raise BuildProblem("'within' needs a duration, e.g. 7 days", operand)
            fields = {"n": operand.n, "unit": operand.unit}
        else:
            if isinstance(operand, _Duration):
                raise BuildProblem(f"'{op}' needs date(...) or days_ago(N), not a duration", meta)
            is_relative = isinstance(operand.raw, dict)
            fields = {"date": DaysAgo(**operand.raw) if is_relative else operand.raw}
        return _model(LastPerformedCondition, meta, event=_text(name), op=op, **fields)

    def message(self, meta: Any, children: list[Any]) -> MessageCondition:
        negation, action, *parts = children
        if action not in MessageAction.__members__.values():
            raise BuildProblem(
                f"unknown message action '{action}' (expected one of: {_one_of(MessageAction)})",
                action,
            )
        fields: dict[str, Any] = {}
        for part in parts:
            if part.key in fields:
                raise BuildProblem(f"{part.key} is given twice", part)
            fields[part.key] = part.value
        return _model(
            MessageCondition,
            meta,
            action=MessageAction(action),
            negate=negation is not None,
            **fields,
        )

    def message_part(self, meta: Any, children: list[Any]) -> _Part:
        return _Part("window", children[0], meta.line, meta.column)

    def channel(self, meta: Any, children: list[Token]) -> _Part:
        return _Part("channel", _text(children[0]), meta.line, meta.column)

    def journey(self, meta: Any, children: list[Token]) -> _Part:
        return _Part("journey", _text(children[0]), meta.line, meta.column)

    def step(self, meta: Any, children: list[Token]) -> _Part:
        return _Part("step", _text(children[0]), meta.line, meta.column)

    def reachable(self, meta: Any, children: list[Token | None]) -> ReachableCondition:
        channel_token, test = children
        assert channel_token is not None
        channel = _text(channel_token)
        channels = get_args(ReachChannel)
        if channel not in channels:
            raise BuildProblem(
                f"unknown channel {channel!r} (expected one of: {', '.join(channels)})", meta
            )
        if test is not None and str(test) != "registered":
            raise BuildProblem(f"unknown reachability test '{test}' (expected: registered)", test)
        return _model(
            ReachableCondition,
            meta,
            channel=channel,
            test="registered" if test is not None else "reachable",
        )

    def segment(self, meta: Any, children: list[Token]) -> SegmentRef:
        segment_id = _text(children[0])
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,63}", segment_id):
            raise BuildProblem(
                f"{segment_id!r} is not a segment id (1 to 64 of a-z, 0-9, '_' and '-',"
                " starting with a letter or digit)",
                meta,
            )
        return _model(SegmentRef, meta, segment=segment_id)
