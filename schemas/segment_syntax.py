"""Syntax errors of the segmentation language told as a user would read them: what was
found, and what could have been written there instead."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from lark import Lark
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken
from lark.lexer import PatternStr

Explained = tuple[str, int, int, tuple[str, ...]]
"""(message, 1-based line, column, what the grammar would have accepted there)."""

_FRIENDLY = {
    "STRING": 'a string ("...")',
    "NUMBER": "a number",
    "WORD": "a name (operator, type or message action)",
    "$END": "the end of the text",
}
_CONDITION_STARTS = frozenset({"T", "E", "L", "M", "R", "S", "all", "any"})
_VALUE_STARTS = frozenset({"true", "false", "date", "days_ago", "price", "version", "["})
_FUNCTIONS = _CONDITION_STARTS | {"A", "date", "days_ago", "price", "version"}
_WORD_CHAR = re.compile(r"[A-Za-z0-9_]{2}")
_CALL = re.compile(r"\s*\(")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _expected(parser: Lark, names: Iterable[str]) -> tuple[str, ...]:
    """Terminal names as the text a user would type, conditions and values grouped."""
    literals: set[str] = set()
    described: set[str] = set()
    for name in names:
        if name in parser.ignore_tokens:
            continue  # layout and comments, not something to type
        if name == "SUM_OP":
            literals.update(("+", "-"))
            continue
        if name in _FRIENDLY:
            described.add(_FRIENDLY[name])
            continue
        try:
            pattern = parser.get_terminal(name).pattern
        except KeyError:
            described.add(name)
            continue
        if isinstance(pattern, PatternStr):
            literals.add(pattern.value)
        else:
            described.add(name.lower())
    if literals >= _CONDITION_STARTS:
        literals -= _CONDITION_STARTS
        described.add("a condition (T, E, L, M, R, S, all or any)")
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


def explain(parser: Lark, text: str, error: UnexpectedInput) -> Explained:
    """What went wrong where in ``text``, as ``parser`` failed on it."""
    names = (
        error.accepts or error.expected
        if isinstance(error, UnexpectedToken)
        else getattr(error, "allowed", None) or ()
    )
    expected = _expected(parser, names)
    token = error.token if isinstance(error, UnexpectedToken) else None
    if token is not None and token.type == "$END":
        line = token.end_line or 1
        column = token.end_column or 1
        return (
            f"unexpected end of the text; expected {_say(expected)}",
            line,
            column,
            expected,
        )
    line, column = int(error.line), int(error.column)
    if not isinstance(error, UnexpectedCharacters | UnexpectedToken):
        return f"expected {_say(expected)}", line, column, expected
    start = _offset(text, line, column)
    # A word is shown (and pointed at) whole, even where the lexer split it.
    while 0 < start < len(text) and _WORD_CHAR.match(text[start - 1] + text[start]):
        start -= 1
        column -= 1
    word = _IDENTIFIER.match(text, start)
    if word and word.group() not in _FUNCTIONS and _CALL.match(text, word.end()):
        return (
            f"unknown function '{word.group()}'; expected {_say(expected)}",
            line,
            column,
            expected,
        )
    if text.startswith('"', start) and "STRING" in names:
        return (
            'a string that is not closed or has an invalid escape (strings are JSON: "...")',
            line,
            column,
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
    return f"unexpected {found!r}; expected {_say(expected)}", line, column, expected
