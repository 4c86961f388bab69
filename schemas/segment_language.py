"""The segmentation language: segment conditions as text, in both directions.

::

    T("Country", eq, "FR") * E("Purchase", count >= 2, last 30 days) - S("churned")

``parse`` reads text into a ``Condition`` of ``schemas.segments``; ``format`` writes a
condition back as canonical text, and ``parse(format(c)) == c``. The grammar lives in
``segment_language.lark`` next to this module; docs/segments.md describes the language.

Every problem, from a missing parenthesis to an operand that does not fit its tag type,
is a ``SegmentSyntaxError`` carrying the line and column of the offending text.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, time
from decimal import Decimal
from importlib import resources
from typing import Any, NoReturn, Protocol, TypeVar

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken, VisitError
from lark.lexer import PatternStr
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
    Predicate,
    Price,
    SegmentRef,
    TagCondition,
    TagType,
    Unit,
    Window,
)
from schemas.values import VersionValue, parse_timestamp

__all__ = [
    "MAX_DEPTH",
    "MAX_EXPRESSION_CHARS",
    "MAX_TERMS",
    "SegmentSyntaxError",
    "format",
    "parse",
    "size_problem",
]

_GRAMMAR = "segment_language.lark"
_SHOWN = 60  # characters shown either side of an error's column in a long line

MAX_TERMS = 200
"""Most conditions in one segment condition: each T, E, L, M and S, and each A filter."""
MAX_DEPTH = 32
"""Most groups nested in one another (parentheses, all(...), any(...), and each + or -
that follows the other kind)."""
MAX_EXPRESSION_CHARS = 50_000
"""Longest expression text, checked before it is parsed."""


class SegmentSyntaxError(ValueError):
    """Text that is not a valid condition: where (1-based line and column) and why.

    ``str()`` gives the message, then the offending line with a caret under the column.
    ``expected`` lists what the grammar would have accepted there (empty when the text
    is well formed but the condition is not, e.g. an operator that does not fit the
    tag's type).
    """

    def __init__(
        self,
        message: str,
        line: int,
        column: int,
        text: str = "",
        expected: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column
        self.text = text
        self.expected = expected

    @property
    def source_line(self) -> str:
        """The line of the text the error points into."""
        lines = self.text.split("\n")
        return lines[self.line - 1].rstrip("\r") if 0 < self.line <= len(lines) else ""

    def __str__(self) -> str:
        source, column = self.source_line, self.column
        if len(source) > 2 * _SHOWN:
            # A long line is shown around the column only.
            start = max(0, min(column - 1 - _SHOWN, len(source) - 2 * _SHOWN))
            shown = source[start : start + 2 * _SHOWN]
            if start > 0:
                shown, column = "..." + shown[3:], column - start
            if start + 2 * _SHOWN < len(source):
                shown = shown[:-3] + "..."
            source = shown
        # Tabs are kept in the caret's indent so the caret lines up under the column.
        pad = "".join("\t" if char == "\t" else " " for char in source[: column - 1])
        pad += " " * max(0, column - 1 - len(source))
        return f"line {self.line}, column {self.column}: {self.message}\n    {source}\n    {pad}^"

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            type(self),
            (self.message, self.line, self.column, self.text, self.expected),
        )


# --- Parsing -------------------------------------------------------------------------


@functools.cache
def _parser() -> Lark:
    """The LALR parser, built on first use and then shared."""
    grammar = resources.files("schemas").joinpath(_GRAMMAR).read_text(encoding="utf-8")
    return Lark(grammar, parser="lalr", propagate_positions=True, maybe_placeholders=True)


def parse(text: str) -> Condition:
    """The condition written in ``text``; SegmentSyntaxError says where and why not,
    also when it is over one of the limits (``MAX_EXPRESSION_CHARS``, ``MAX_TERMS``,
    ``MAX_DEPTH``)."""
    if len(text) > MAX_EXPRESSION_CHARS:
        message = (
            f"the expression is {len(text)} characters, over the limit of {MAX_EXPRESSION_CHARS}"
        )
        raise SegmentSyntaxError(message, 1, 1, text)
    try:
        tree = _parser().parse(text)
        _count_terms(tree, text)  # before the models are built: that is the slow part
        condition: Condition = _Builder().transform(tree)
    except UnexpectedInput as error:
        raise _syntax_error(text, error) from None
    except VisitError as error:
        if isinstance(error.orig_exc, _Problem):
            problem = error.orig_exc
            raise SegmentSyntaxError(problem.message, problem.line, problem.column, text) from None
        raise
    except RecursionError:
        raise SegmentSyntaxError("the condition is nested too deeply", 1, 1, text) from None
    over = size_problem(condition)
    if over is not None:
        raise SegmentSyntaxError(over, 1, 1, text)
    return condition


_TERM_RULES = frozenset({"tag", "event", "last_performed", "message", "segment", "attribute"})


def _count_terms(tree: Tree[Token], text: str) -> None:
    """Refuse a parse tree with more than MAX_TERMS terms, pointing at the first one
    over the limit."""
    terms = 0
    for subtree in tree.iter_subtrees_topdown():  # type: ignore[no-untyped-call] # text order
        if subtree.data in _TERM_RULES:
            terms += 1
            if terms > MAX_TERMS:
                message = f"term {terms} is over the limit of {MAX_TERMS} terms"
                meta = subtree.meta
                raise SegmentSyntaxError(message, meta.line or 1, meta.column or 1, text)


def size_problem(condition: Condition) -> str | None:
    """Why ``condition`` is over a limit (terms or nesting), or None. Conditions given
    as JSON are checked with this too."""
    terms = depth = 0
    stack: list[tuple[Condition, int]] = [(condition, 0)]
    while stack:  # iterative: a deep tree must not exhaust Python's stack here
        node, level = stack.pop()
        depth = max(depth, level)
        if isinstance(node, All | Any_):
            stack.extend((child, level + 1) for child in node.conditions)
        elif isinstance(node, AndNot):
            # a - b - c reads as one level: only the excluded side goes deeper.
            stack += [(node.include, level), (node.exclude, level + 1)]
        else:
            terms += 1 + (len(node.filters) if isinstance(node, EventCondition) else 0)
    if terms > MAX_TERMS:
        return f"the condition has {terms} terms, over the limit of {MAX_TERMS}"
    if depth > MAX_DEPTH:
        return f"the condition nests groups {depth} deep, over the limit of {MAX_DEPTH}"
    return None


class _Where(Protocol):
    @property
    def line(self) -> int | None: ...

    @property
    def column(self) -> int | None: ...


class _Problem(Exception):
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

_PRESENCE = frozenset({Op.EXISTS, Op.NOT_EXISTS})
_LIST_OPS = frozenset({Op.CONTAINS_ANY, Op.CONTAINS_ALL, Op.CONTAINS_NONE})
_DAY_OPS = frozenset({Op.WITHIN_LAST, Op.MORE_THAN_AGO})
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
_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


def _inferred_type(op: Op, first_kind: str | None) -> TagType:
    """The tag type a predicate written without one gets (docs/segments.md)."""
    if op in _LIST_OPS:
        return TagType.LIST
    if op in _DAY_OPS:
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
        raise _Problem(_describe(error), where) from None


def _text(token: Token) -> str:
    """The value of a string literal token (JSON escapes decoded)."""
    value: str = json.loads(token)
    return value


def _natural(token: Token) -> int:
    """A count or a number of units: a whole number >= 0."""
    if not re.fullmatch(r"-?[0-9]+", token) or int(token) < 0:
        raise _Problem(f"expected a whole number >= 0, got {token}", token)
    return int(token)


def _group(factory: type[All] | type[Any_], conditions: list[Condition]) -> Condition:
    if len(conditions) == 1:
        return conditions[0]
    return factory(conditions=tuple(conditions))


@v_args(meta=True)
class _Builder(Transformer[Token, Any]):
    """Builds the models bottom-up; a model that refuses its fields becomes a _Problem
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
        name, predicate = children
        return _model(
            TagCondition,
            meta,
            tag=_text(name),
            type=predicate.type,
            op=predicate.op,
            value=predicate.value,
        )

    def attribute(self, meta: Any, children: list[Any]) -> AttributeFilter:
        name, predicate = children
        return _model(
            AttributeFilter,
            meta,
            attribute=_text(name),
            type=predicate.type,
            op=predicate.op,
            value=predicate.value,
        )

    def predicate(self, meta: Any, children: list[Any]) -> _Predicate:
        first, second, operand = children
        type_word, op_word = (None, first) if second is None else (first, second)
        explicit = None
        if type_word is not None:
            if type_word not in TagType.__members__.values():
                raise _Problem(
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
            raise _Problem(
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
                raise _Problem(
                    f"a decimal number is only an operand inside price(...), got {item.raw}", item
                )
        if operand is None and op not in _PRESENCE:
            raise _Problem(f"'{op}' needs an operand", op_word)
        if op in _DAY_OPS and items and items[0].kind != "integer":
            raise _Problem(f"'{op}' takes a number of days, e.g. {op}, 30", items[0])
        first_kind = items[0].kind if items else None
        tag_type = explicit or _inferred_type(op, first_kind)
        for item in items:
            if item.kind in _TYPED_KINDS and _KIND_TYPES[item.kind] is not tag_type:
                raise _Problem(f"a {item.kind} operand does not fit a {tag_type} condition", item)
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
            raise _Problem(f"not a date: {_describe(error)}", meta) from None
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
            raise _Problem(
                f"unknown operator '{op_word}' (expected one of: {_one_of(LastPerformedOp)})",
                op_word,
            )
        op = LastPerformedOp(op_word)
        fields: dict[str, Any]
        if op is LastPerformedOp.WITHIN:
            if not isinstance(operand, _Duration):
                raise _Problem("'within' needs a duration, e.g. 7 days", operand)
            fields = {"n": operand.n, "unit": operand.unit}
        else:
            if isinstance(operand, _Duration):
                raise _Problem(f"'{op}' needs date(...) or days_ago(N), not a duration", meta)
            is_relative = isinstance(operand.raw, dict)
            fields = {"date": DaysAgo(**operand.raw) if is_relative else operand.raw}
        return _model(LastPerformedCondition, meta, event=_text(name), op=op, **fields)

    def message(self, meta: Any, children: list[Any]) -> MessageCondition:
        negation, action, *parts = children
        if action not in MessageAction.__members__.values():
            raise _Problem(
                f"unknown message action '{action}' (expected one of: {_one_of(MessageAction)})",
                action,
            )
        fields: dict[str, Any] = {}
        for part in parts:
            if part.key in fields:
                raise _Problem(f"{part.key} is given twice", part)
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

    def segment(self, meta: Any, children: list[Token]) -> SegmentRef:
        segment_id = _text(children[0])
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,63}", segment_id):
            raise _Problem(
                f"{segment_id!r} is not a segment id (1 to 64 of a-z, 0-9, '_' and '-',"
                " starting with a letter or digit)",
                meta,
            )
        return _model(SegmentRef, meta, segment=segment_id)


# --- Syntax errors -------------------------------------------------------------------

_FRIENDLY = {
    "STRING": 'a string ("...")',
    "NUMBER": "a number",
    "WORD": "a name (operator, type or message action)",
    "$END": "the end of the text",
}
_CONDITION_STARTS = frozenset({"T", "E", "L", "M", "S", "all", "any"})
_VALUE_STARTS = frozenset({"true", "false", "date", "days_ago", "price", "version", "["})
_FUNCTIONS = _CONDITION_STARTS | {"A", "date", "days_ago", "price", "version"}
_WORD_CHAR = re.compile(r"[A-Za-z0-9_]{2}")
_CALL = re.compile(r"\s*\(")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _expected(names: Iterable[str]) -> tuple[str, ...]:
    """Terminal names as the text a user would type, conditions and values grouped."""
    literals: set[str] = set()
    described: set[str] = set()
    for name in names:
        if name in _parser().ignore_tokens:
            continue  # layout and comments, not something to type
        if name == "SUM_OP":
            literals.update(("+", "-"))
            continue
        if name in _FRIENDLY:
            described.add(_FRIENDLY[name])
            continue
        try:
            pattern = _parser().get_terminal(name).pattern
        except KeyError:
            described.add(name)
            continue
        if isinstance(pattern, PatternStr):
            literals.add(pattern.value)
        else:
            described.add(name.lower())
    if literals >= _CONDITION_STARTS:
        literals -= _CONDITION_STARTS
        described.add("a condition (T, E, L, M, S, all or any)")
    if {_FRIENDLY["STRING"], _FRIENDLY["NUMBER"]} <= described:
        literals -= _VALUE_STARTS
        described.discard(_FRIENDLY["STRING"])
        described.discard(_FRIENDLY["NUMBER"])
        described.add("a value")
    return tuple(sorted(described)) + tuple(f"'{literal}'" for literal in sorted(literals))


def _say(items: Sequence[str]) -> str:
    if not items:
        return "nothing"
    if len(items) == 1:
        return items[0]
    return "one of: " + ", ".join(items)


def _offset(text: str, line: int, column: int) -> int:
    lines = text.split("\n")
    return sum(len(lines[index]) + 1 for index in range(line - 1)) + column - 1


def _syntax_error(text: str, error: UnexpectedInput) -> SegmentSyntaxError:
    names = (
        error.accepts or error.expected
        if isinstance(error, UnexpectedToken)
        else getattr(error, "allowed", None) or ()
    )
    expected = _expected(names)
    token = error.token if isinstance(error, UnexpectedToken) else None
    if token is not None and token.type == "$END":
        line = token.end_line or 1
        column = token.end_column or 1
        return SegmentSyntaxError(
            f"unexpected end of the text; expected {_say(expected)}",
            line,
            column,
            text,
            expected,
        )
    line, column = int(error.line), int(error.column)
    if not isinstance(error, UnexpectedCharacters | UnexpectedToken):
        return SegmentSyntaxError(f"expected {_say(expected)}", line, column, text, expected)
    start = _offset(text, line, column)
    # A word is shown (and pointed at) whole, even where the lexer split it.
    while 0 < start < len(text) and _WORD_CHAR.match(text[start - 1] + text[start]):
        start -= 1
        column -= 1
    word = _IDENTIFIER.match(text, start)
    if word and word.group() not in _FUNCTIONS and _CALL.match(text, word.end()):
        return SegmentSyntaxError(
            f"unknown function '{word.group()}'; expected {_say(expected)}",
            line,
            column,
            text,
            expected,
        )
    if text.startswith('"', start) and "STRING" in names:
        return SegmentSyntaxError(
            'a string that is not closed or has an invalid escape (strings are JSON: "...")',
            line,
            column,
            text,
            expected,
        )
    if word:
        found = word.group()
    elif token is not None:
        found = str(token)
    else:
        found = text[start]
    if len(found) > 30:
        found = found[:27] + "..."
    return SegmentSyntaxError(
        f"unexpected {found!r}; expected {_say(expected)}", line, column, text, expected
    )


def _no_format(condition: object) -> NoReturn:
    raise TypeError(f"not a segment condition: {condition!r}")


# --- Formatting ----------------------------------------------------------------------


def format(condition: Condition) -> str:
    """Canonical text of ``condition``: one line, minimal parentheses."""
    if isinstance(condition, All):
        if len(condition.conditions) == 1:
            return f"all({format(condition.conditions[0])})"
        return " * ".join(_in_all(child) for child in condition.conditions)
    if isinstance(condition, Any_):
        if len(condition.conditions) == 1:
            return f"any({format(condition.conditions[0])})"
        return " + ".join(
            _in_any(child, first=index == 0) for index, child in enumerate(condition.conditions)
        )
    if isinstance(condition, AndNot):
        exclude = format(condition.exclude)
        if _level(condition.exclude) == 1:
            exclude = f"({exclude})"
        return f"{format(condition.include)} - {exclude}"
    if isinstance(condition, TagCondition):
        return f"T({_quote(condition.tag)}, {_predicate(condition)})"
    if isinstance(condition, EventCondition):
        return _event(condition)
    if isinstance(condition, LastPerformedCondition):
        return _last_performed(condition)
    if isinstance(condition, MessageCondition):
        return _message(condition)
    if isinstance(condition, SegmentRef):
        return f"S({_quote(condition.segment)})"
    _no_format(condition)


def _level(condition: Condition) -> int:
    """How tightly the text of ``condition`` binds: 1 for + and -, 2 for *, 3 atoms."""
    if isinstance(condition, All) and len(condition.conditions) > 1:
        return 2
    if (isinstance(condition, Any_) and len(condition.conditions) > 1) or isinstance(
        condition, AndNot
    ):
        return 1
    return 3


def _in_all(child: Condition) -> str:
    # A nested All is bracketed too, or it would merge into its parent when read back.
    text = format(child)
    return f"({text})" if _level(child) < 3 else text


def _in_any(child: Condition, *, first: bool) -> str:
    text = format(child)
    nested_any = isinstance(child, Any_) and len(child.conditions) > 1
    # "a - b + c" is Any_(AndNot(a, b), c): only a leading AndNot can go bare.
    if nested_any or (isinstance(child, AndNot) and not first):
        return f"({text})"
    return text


def _quote(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def _predicate(predicate: Predicate) -> str:
    raw = predicate.value
    if predicate.op in _PRESENCE or raw is None:
        literals: list[tuple[str, str]] = []
        operand = ""
    elif predicate.op in _DAY_OPS:
        literals = [(str(raw), "integer")]
        operand = f", {raw}"
    elif isinstance(raw, list | tuple):
        literals = [_literal(predicate.type, item) for item in raw]
        operand = ", [" + ", ".join(text for text, _ in literals) + "]"
    else:
        literals = [_literal(predicate.type, raw)]
        operand = ", " + literals[0][0]
    first_kind = literals[0][1] if literals else None
    if _inferred_type(predicate.op, first_kind) is predicate.type:
        return f"{predicate.op}{operand}"
    return f"{predicate.type}, {predicate.op}{operand}"


def _literal(tag_type: TagType, raw: Any) -> tuple[str, str]:
    """The literal for one operand of a ``tag_type`` predicate, and its kind."""
    if tag_type is TagType.DATE:
        if isinstance(raw, dict):
            return f"days_ago({DaysAgo.model_validate(raw).days_ago})", "date"
        if isinstance(raw, str):
            return f"date({_quote(raw)})", "date"
        return f"date({raw!r})", "date"  # epoch milliseconds, int or float
    if tag_type is TagType.PRICE:
        price = Price.model_validate(raw)
        amount = raw.get("amount") if isinstance(raw, dict) else None
        if isinstance(amount, str):
            text = amount if _NUMBER.fullmatch(amount) else _quote(amount)
        else:
            text = _decimal(price.amount)
        return f"price({text}, {_quote(price.currency)})", "price"
    if tag_type is TagType.VERSION and isinstance(raw, str):
        return f"version({_quote(raw)})", "version"
    if isinstance(raw, bool):
        return ("true" if raw else "false"), "boolean"
    if isinstance(raw, int):
        return str(raw), "integer"
    return _quote(str(raw)), "string"


def _decimal(amount: Decimal) -> str:
    text = str(amount)
    return text if _NUMBER.fullmatch(text) else _quote(text)


def _moment(moment: datetime) -> str:
    """date("2026-01-01") at midnight UTC, else the full instant, e.g.
    date("2026-01-01T10:30:00.250Z")."""
    if moment.timetz().replace(tzinfo=None) == time() and not moment.utcoffset():
        return f'date("{moment.date().isoformat()}")'
    spec = "milliseconds" if moment.microsecond % 1000 == 0 else "microseconds"
    text = moment.isoformat(timespec=spec)
    if text.endswith("+00:00"):
        text = text[: -len("+00:00")] + "Z"
    return f'date("{text}")'


def _units(n: int, unit: Unit) -> str:
    return f"{n} {unit.value[:-1] if n == 1 else unit.value}"


def _window(window: Window) -> str:
    n, m = window.n or 0, window.m or 0
    if window.kind == "last":
        return f"last {_units(n, window.unit)}"
    if window.kind == "exactly_ago":
        return f"exactly {_units(n, Unit.DAYS)} ago"
    if window.kind == "ago_or_more":
        return f"{n} or more days ago"
    if window.kind == "between_ago":
        return f"between {n} and {m} days ago"
    if window.kind == "between_dates" and window.start is not None and window.end is not None:
        return f"between {_moment(window.start)} and {_moment(window.end)}"
    return "ever"


def _count(count: Count) -> str:
    if isinstance(count.value, tuple):
        return f"count between {count.value[0]} and {count.value[1]}"
    symbol = {CountOp.EQ: "=", CountOp.GTE: ">=", CountOp.LTE: "<="}[count.op]
    return f"count {symbol} {count.value}"


def _event(event: EventCondition) -> str:
    parts = [_quote(event.event), _count(event.count), _window(event.window)]
    if event.filters:
        filters = " * ".join(
            f"A({_quote(item.attribute)}, {_predicate(item)})" for item in event.filters
        )
        parts.append(f"where {filters}")
    return f"E({', '.join(parts)})"


def _last_performed(condition: LastPerformedCondition) -> str:
    if condition.op is LastPerformedOp.WITHIN:
        operand = _units(condition.n or 0, condition.unit)
    elif isinstance(condition.date, DaysAgo):
        operand = f"days_ago({condition.date.days_ago})"
    elif isinstance(condition.date, datetime):
        operand = _moment(condition.date)
    else:
        _no_format(condition)
    return f"L({_quote(condition.event)}, {condition.op}, {operand})"


def _message(condition: MessageCondition) -> str:
    parts = [f"not {condition.action}" if condition.negate else str(condition.action)]
    for key in ("channel", "journey", "step"):
        value = getattr(condition, key)
        if value is not None:
            parts.append(f"{key} {_quote(value)}")
    parts.append(_window(condition.window))
    return f"M({', '.join(parts)})"
