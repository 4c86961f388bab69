"""The segmentation language: segment conditions as text, in both directions.

::

    T("Country", eq, "FR") * E("Purchase", count >= 2, last 30 days) - S("churned")

``parse`` reads text into a ``Condition`` of ``schemas.segments``; ``format`` writes a
condition back as canonical text, and ``parse(format(c)) == c``. The grammar lives in
``segment_language.lark`` next to this module; docs/segments.md describes the language.
The parse tree becomes models in ``segment_builder.py``; ``segment_syntax.py`` words
the syntax errors.

Every problem, from a missing parenthesis to an operand that does not fit its tag type,
is a ``SegmentSyntaxError`` carrying the line and column of the offending text.
"""

from __future__ import annotations

import functools
import json
from datetime import datetime, time
from decimal import Decimal
from importlib import resources
from typing import Any, NoReturn

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedInput, VisitError

from schemas.segment_builder import (
    DAY_OPS,
    NUMBER,
    PRESENCE_OPS,
    BuildProblem,
    ConditionBuilder,
    inferred_type,
)
from schemas.segment_syntax import explain
from schemas.segments import (
    All,
    AndNot,
    Any_,
    Condition,
    Count,
    CountOp,
    DaysAgo,
    EventCondition,
    LastPerformedCondition,
    LastPerformedOp,
    MessageCondition,
    Predicate,
    Price,
    ReachableCondition,
    SegmentRef,
    TagCondition,
    TagType,
    Unit,
    Window,
)

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
        condition: Condition = ConditionBuilder().transform(tree)
    except UnexpectedInput as error:
        message, line, column, expected = explain(_parser(), text, error)
        raise SegmentSyntaxError(message, line, column, text, expected) from None
    except VisitError as error:
        if isinstance(error.orig_exc, BuildProblem):
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
    if isinstance(condition, ReachableCondition):
        registered = ", registered" if condition.test == "registered" else ""
        return f"R({_quote(condition.channel)}{registered})"
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
    if predicate.op in PRESENCE_OPS or raw is None:
        literals: list[tuple[str, str]] = []
        operand = ""
    elif predicate.op in DAY_OPS:
        literals = [(str(raw), "integer")]
        operand = f", {raw}"
    elif isinstance(raw, list | tuple):
        literals = [_literal(predicate.type, item) for item in raw]
        operand = ", [" + ", ".join(text for text, _ in literals) + "]"
    else:
        literals = [_literal(predicate.type, raw)]
        operand = ", " + literals[0][0]
    first_kind = literals[0][1] if literals else None
    if inferred_type(predicate.op, first_kind) is predicate.type:
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
            text = amount if NUMBER.fullmatch(amount) else _quote(amount)
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
    return text if NUMBER.fullmatch(text) else _quote(text)


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
