"""The segmentation language: text to condition models and back, precedence, type
inference, and errors that point at the offending line and column."""

from __future__ import annotations

import pickle
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.segment_language import (
    MAX_DEPTH,
    MAX_EXPRESSION_CHARS,
    MAX_TERMS,
    SegmentSyntaxError,
    format,
    parse,
)
from schemas.segments import (
    OPERATORS,
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
    SegmentRef,
    TagCondition,
    TagType,
    Unit,
    Window,
)

A, B, C, D = (SegmentRef(segment=name) for name in "abcd")


def tag(name: str, op: str, value: Any = None, type_: str = "string") -> TagCondition:
    return TagCondition(tag=name, type=TagType(type_), op=Op(op), value=value)


def event(name: str, count: Count | None = None, window: Window | None = None) -> EventCondition:
    return EventCondition(event=name, count=count or Count(), window=window or Window(kind="ever"))


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# --- The seed's segments ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('T("Language", eq, "hi")', tag("Language", "eq", "hi")),
        ('T("Country", eq, "PT")', tag("Country", "eq", "PT")),
        (
            'E("ApplicationOpen", count = 0, last 7 days)',
            event("ApplicationOpen", Count(op=CountOp.EQ, value=0), Window(kind="last", n=7)),
        ),
        (
            'E("Purchase", count >= 2, last 30 days)',
            event("Purchase", Count(op=CountOp.GTE, value=2), Window(kind="last", n=30)),
        ),
    ],
)
def test_seed_segments(text: str, expected: Condition) -> None:
    assert parse(text) == expected
    assert format(expected) == text


# --- Every form ------------------------------------------------------------------------

FORMS: list[tuple[str, Condition]] = [
    # Tags: the type follows from the operand, or from the operator.
    ('T("Age", between, [17, 20])', tag("Age", "between", [17, 20], "integer")),
    ('T("Age", gte, -3)', tag("Age", "gte", -3, "integer")),
    ('T("Language", in, ["pt", "hi"])', tag("Language", "in", ["pt", "hi"])),
    ('T("Email", exists)', tag("Email", "exists")),
    ('T("Email", not_exists)', tag("Email", "not_exists")),
    ('T("Subscribed", eq, true)', tag("Subscribed", "eq", True, "boolean")),
    ('T("Subscribed", noteq, false)', tag("Subscribed", "noteq", False, "boolean")),
    (
        'T("Sports", contains_any, ["ski", "surf"])',
        tag("Sports", "contains_any", ["ski", "surf"], "list"),
    ),
    ('T("Lucky", contains_all, [7, 13])', tag("Lucky", "contains_all", [7, 13], "list")),
    ('T("Sports", contains_none, ["golf"])', tag("Sports", "contains_none", ["golf"], "list")),
    ('T("Birthday", eq, date("2026-12-10"))', tag("Birthday", "eq", "2026-12-10", "date")),
    ('T("Signup", lt, date(1700000000000))', tag("Signup", "lt", 1700000000000, "date")),
    ('T("Signup", gt, days_ago(7))', tag("Signup", "gt", {"days_ago": 7}, "date")),
    ('T("Signup", within_last, 30)', tag("Signup", "within_last", 30, "date")),
    ('T("Signup", more_than_ago, 90)', tag("Signup", "more_than_ago", 90, "date")),
    (
        'T("Spent", gte, price(9.99, "EUR"))',
        tag("Spent", "gte", {"amount": "9.99", "currency": "EUR"}, "price"),
    ),
    ('T("App", gte, version("2.4.1"))', tag("App", "gte", "2.4.1", "version")),
    (
        'T("App", notin, [version("1.0"), version("1.1")])',
        tag("App", "notin", ["1.0", "1.1"], "version"),
    ),
    # An explicit type where none can be inferred.
    (
        'T("Last Application Open", date, exists)',
        tag("Last Application Open", "exists", None, "date"),
    ),
    ('T("Score", integer, not_exists)', tag("Score", "not_exists", None, "integer")),
    # Events: every window kind.
    ('E("X", count >= 1, ever)', event("X")),
    (
        'E("X", count between 2 and 5, ever)',
        event("X", Count(op=CountOp.BETWEEN, value=(2, 5))),
    ),
    (
        'E("X", count <= 1, exactly 3 days ago)',
        event("X", Count(op=CountOp.LTE, value=1), Window(kind="exactly_ago", n=3)),
    ),
    ('E("X", count >= 1, 7 or more days ago)', event("X", window=Window(kind="ago_or_more", n=7))),
    (
        'E("X", count >= 1, between 3 and 7 days ago)',
        event("X", window=Window(kind="between_ago", n=3, m=7)),
    ),
    (
        'E("X", count >= 1, between date("2026-01-01") and date("2026-02-01T12:30:00.000Z"))',
        event(
            "X",
            window=Window(
                kind="between_dates",
                start=moment("2026-01-01"),
                end=moment("2026-02-01T12:30:00"),
            ),
        ),
    ),
    (
        'E("X", count >= 1, last 1 hour)',
        event("X", window=Window(kind="last", n=1, unit=Unit.HOURS)),
    ),
    (
        'E("Purchase", count >= 1, last 30 minutes,'
        ' where A("amount", gte, 10) * A("currency", eq, "EUR"))',
        EventCondition(
            event="Purchase",
            window=Window(kind="last", n=30, unit=Unit.MINUTES),
            filters=(
                AttributeFilter(attribute="amount", type=TagType.INTEGER, op=Op.GTE, value=10),
                AttributeFilter(attribute="currency", type=TagType.STRING, op=Op.EQ, value="EUR"),
            ),
        ),
    ),
    # Last performed.
    (
        'L("ApplicationOpen", before, days_ago(7))',
        LastPerformedCondition(
            event="ApplicationOpen", op=LastPerformedOp.BEFORE, date=DaysAgo(days_ago=7)
        ),
    ),
    (
        'L("X", after, date("2026-01-01"))',
        LastPerformedCondition(event="X", op=LastPerformedOp.AFTER, date=moment("2026-01-01")),
    ),
    ('L("X", within, 7 days)', LastPerformedCondition(event="X", op=LastPerformedOp.WITHIN, n=7)),
    (
        'L("X", within, 15 minutes)',
        LastPerformedCondition(event="X", op=LastPerformedOp.WITHIN, n=15, unit=Unit.MINUTES),
    ),
    # Messages.
    (
        'M(opened, channel "email", journey "welcome", step "s1", last 5 days)',
        MessageCondition(
            action=MessageAction.OPENED,
            channel="email",
            journey="welcome",
            step="s1",
            window=Window(kind="last", n=5),
        ),
    ),
    (
        'M(not clicked, channel "push", ever)',
        MessageCondition(action=MessageAction.CLICKED, negate=True, channel="push"),
    ),
    ("M(received, ever)", MessageCondition(action=MessageAction.RECEIVED)),
    # Segments and groups.
    ('S("vip")', SegmentRef(segment="vip")),
    ('all(S("a"))', All(conditions=(A,))),
    ('any(S("a"))', Any_(conditions=(A,))),
]


@pytest.mark.parametrize(("text", "expected"), FORMS, ids=[text for text, _ in FORMS])
def test_forms_parse_and_format_canonically(text: str, expected: Condition) -> None:
    assert parse(text) == expected
    assert format(expected) == text


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        # Count and window may be left out: count >= 1, ever.
        ('E("X")', 'E("X", count >= 1, ever)'),
        ('E("X", between 3 and 7 days ago)', 'E("X", count >= 1, between 3 and 7 days ago)'),
        ('E("X", count = 0)', 'E("X", count = 0, ever)'),
        ("M(clicked)", "M(clicked, ever)"),
        # Message parts in any order.
        (
            'M(opened, last 2 days, step "s", channel "sms")',
            'M(opened, channel "sms", step "s", last 2 days)',
        ),
        # Singular and plural units; written back as the number reads.
        ('E("X", last 1 days)', 'E("X", count >= 1, last 1 day)'),
        ('E("X", last 2 minute)', 'E("X", count >= 1, last 2 minutes)'),
        ('E("X", exactly 1 days ago)', 'E("X", count >= 1, exactly 1 day ago)'),
        # Layout, comments and redundant parentheses do not matter.
        (
            '  # VIPs in France\n  (T( "Country" ,eq,"FR" ))\n*\tS("vip")  # done\n',
            'T("Country", eq, "FR") * S("vip")',
        ),
        # An explicit type that inference would give anyway is dropped.
        ('T("Age", integer, gt, 18)', 'T("Age", gt, 18)'),
        ('T("App", version, eq, "2.4")', 'T("App", eq, version("2.4"))'),
        ('T("Birthday", date, eq, "2026-12-10")', 'T("Birthday", eq, date("2026-12-10"))'),
        # Strings are JSON: escapes are decoded and written back minimally.
        (r'T("Ville", eq, "Montr\u00e9al \"QC\"")', 'T("Ville", eq, "Montréal \\"QC\\"")'),
        ('T("Spent", lt, price("12.50", "USD"))', 'T("Spent", lt, price(12.50, "USD"))'),
        (
            'L("X", after, date("2026-01-01T00:00:00+02:00"))',
            'L("X", after, date("2025-12-31T22:00:00.000Z"))',
        ),
    ],
)
def test_shorthands_format_to_canonical_text(text: str, canonical: str) -> None:
    condition = parse(text)
    assert format(condition) == canonical
    assert parse(canonical) == condition


# --- Precedence and associativity ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('S("a") * S("b") * S("c")', All(conditions=(A, B, C))),
        ('S("a") + S("b") + S("c")', Any_(conditions=(A, B, C))),
        ('S("a") - S("b")', AndNot(include=A, exclude=B)),
        ('S("a") + S("b") * S("c")', Any_(conditions=(A, All(conditions=(B, C))))),
        ('S("a") * S("b") + S("c")', Any_(conditions=(All(conditions=(A, B)), C))),
        ('S("a") - S("b") * S("c")', AndNot(include=A, exclude=All(conditions=(B, C)))),
        ('S("a") + S("b") - S("c")', AndNot(include=Any_(conditions=(A, B)), exclude=C)),
        ('S("a") - S("b") + S("c")', Any_(conditions=(AndNot(include=A, exclude=B), C))),
        ('S("a") - S("b") - S("c")', AndNot(include=AndNot(include=A, exclude=B), exclude=C)),
        (
            'S("a") + S("b") - S("c") + S("d")',
            Any_(conditions=(AndNot(include=Any_(conditions=(A, B)), exclude=C), D)),
        ),
        # Parentheses keep their group: it is not merged into the one around it.
        ('(S("a") + S("b")) + S("c")', Any_(conditions=(Any_(conditions=(A, B)), C))),
        ('S("a") * (S("b") * S("c"))', All(conditions=(A, All(conditions=(B, C))))),
        ('(S("a") + S("b")) * S("c")', All(conditions=(Any_(conditions=(A, B)), C))),
        ('S("a") - (S("b") - S("c"))', AndNot(include=A, exclude=AndNot(include=B, exclude=C))),
        ('S("a") + (S("b") - S("c"))', Any_(conditions=(A, AndNot(include=B, exclude=C)))),
        ('((S("a")))', A),
        ('all(S("a"), S("b") + S("c"))', All(conditions=(A, Any_(conditions=(B, C))))),
    ],
)
def test_precedence_and_associativity(text: str, expected: Condition) -> None:
    assert parse(text) == expected
    assert parse(format(expected)) == expected


def test_format_uses_minimal_parentheses() -> None:
    assert format(parse('(S("a") * S("b")) + (S("c") - S("d"))')) == (
        'S("a") * S("b") + (S("c") - S("d"))'
    )
    assert format(parse('(S("a") - S("b")) + S("c")')) == 'S("a") - S("b") + S("c")'


# --- Round trip on random condition trees ----------------------------------------------

_names = st.text(min_size=1, max_size=12)
_labels = st.text(max_size=8)
_days = st.integers(min_value=0, max_value=36500)
_instants = st.datetimes(
    # Hypothesis takes naive bounds and attaches the time zones itself.
    min_value=datetime(1900, 1, 2, tzinfo=UTC).replace(tzinfo=None),
    max_value=datetime(2299, 12, 30, tzinfo=UTC).replace(tzinfo=None),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30))]),
)
_whole_instants = _instants.map(
    lambda value: value.replace(hour=0, minute=0, second=0, microsecond=0)
)
_currencies = st.sampled_from(["EUR", "USD", "JPY"])
_amounts = st.decimals(
    min_value=-(10**9), max_value=10**9, places=2, allow_nan=False, allow_infinity=False
).map(str)


def _dates() -> st.SearchStrategy[Any]:
    return st.one_of(
        _instants.map(lambda value: value.isoformat()),
        _whole_instants.map(lambda value: value.date().isoformat()),
        st.integers(min_value=-2_208_900_000_000, max_value=10_413_700_000_000),
        _days.map(lambda n: {"days_ago": n}),
    )


_SCALARS: dict[TagType, st.SearchStrategy[Any]] = {
    TagType.INTEGER: st.integers(min_value=-(2**63), max_value=2**63 - 1),
    TagType.STRING: _labels,
    TagType.LIST: st.one_of(_labels, st.integers()),
    TagType.BOOLEAN: st.booleans(),
    TagType.DATE: _dates(),
    TagType.VERSION: st.from_regex(r"[0-9]{1,4}(\.[0-9]{1,4}){0,3}", fullmatch=True),
}


@st.composite
def _predicates(draw: st.DrawFn) -> dict[str, Any]:
    tag_type = draw(st.sampled_from(list(TagType)))
    op = draw(st.sampled_from(sorted(OPERATORS[tag_type])))
    if tag_type is TagType.PRICE:
        currency = draw(_currencies)
        scalar = _amounts.map(lambda amount: {"amount": amount, "currency": currency})
    else:
        scalar = _SCALARS[tag_type]
    value: Any
    if op in (Op.EXISTS, Op.NOT_EXISTS):
        value = None
    elif op in (Op.WITHIN_LAST, Op.MORE_THAN_AGO):
        value = draw(_days)
    elif op is Op.BETWEEN:
        value = draw(st.lists(scalar, min_size=2, max_size=2))
    elif op in (Op.IN, Op.NOTIN, Op.CONTAINS_ANY, Op.CONTAINS_ALL, Op.CONTAINS_NONE):
        value = draw(st.lists(scalar, min_size=1, max_size=3))
    else:
        value = draw(scalar)
    return {"type": tag_type, "op": op, "value": value}


def _windows() -> st.SearchStrategy[Window]:
    n = st.integers(min_value=0, max_value=10_000)
    return st.one_of(
        st.builds(Window, kind=st.just("last"), n=n, unit=st.sampled_from(list(Unit))),
        st.builds(Window, kind=st.sampled_from(["exactly_ago", "ago_or_more"]), n=n),
        st.tuples(n, n)
        .filter(lambda pair: pair[0] != pair[1])
        .map(lambda pair: Window(kind="between_ago", n=min(pair), m=max(pair))),
        st.lists(_instants, min_size=2, max_size=2).map(
            lambda pair: Window(kind="between_dates", start=min(pair), end=max(pair))
        ),
        st.just(Window(kind="ever")),
    )


_counts = st.one_of(
    st.builds(
        Count,
        op=st.sampled_from([CountOp.EQ, CountOp.GTE, CountOp.LTE]),
        value=st.integers(min_value=0, max_value=1000),
    ),
    st.lists(st.integers(min_value=0, max_value=1000), min_size=2, max_size=2).map(
        lambda pair: Count(op=CountOp.BETWEEN, value=(min(pair), max(pair)))
    ),
)

_leaves: st.SearchStrategy[Condition] = st.one_of(
    st.builds(lambda name, p: TagCondition(tag=name, **p), _names, _predicates()),
    st.builds(
        EventCondition,
        event=_names,
        count=_counts,
        window=_windows(),
        filters=st.lists(
            st.builds(lambda name, p: AttributeFilter(attribute=name, **p), _names, _predicates()),
            max_size=2,
        ).map(tuple),
    ),
    st.builds(
        LastPerformedCondition,
        event=_names,
        op=st.sampled_from([LastPerformedOp.BEFORE, LastPerformedOp.AFTER]),
        date=st.one_of(_instants, st.builds(DaysAgo, days_ago=_days)),
    ),
    st.builds(
        LastPerformedCondition,
        event=_names,
        op=st.just(LastPerformedOp.WITHIN),
        n=st.integers(min_value=0, max_value=10_000),
        unit=st.sampled_from(list(Unit)),
    ),
    st.builds(
        MessageCondition,
        action=st.sampled_from(list(MessageAction)),
        negate=st.booleans(),
        journey=st.none() | _labels,
        step=st.none() | _labels,
        channel=st.none() | _labels,
        window=_windows(),
    ),
    st.builds(SegmentRef, segment=st.from_regex(r"[a-z0-9][a-z0-9_-]{0,8}", fullmatch=True)),
)


def _conditions(depth: int) -> st.SearchStrategy[Condition]:
    if depth == 0:
        return _leaves
    below = _conditions(depth - 1)
    children = st.lists(below, min_size=1, max_size=3).map(tuple)
    return st.one_of(
        _leaves,
        st.builds(All, conditions=children),
        st.builds(Any_, conditions=children),
        st.builds(AndNot, include=below, exclude=below),
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_conditions(3))
def test_random_trees_round_trip(condition: Condition) -> None:
    text = format(condition)
    assert parse(text) == condition
    assert format(parse(text)) == text


def test_formatted_text_is_one_line_and_explicit_types_only_when_needed() -> None:
    condition = All(conditions=(tag("Name", "exists"), tag("Birthday", "exists", type_="date")))
    assert format(condition) == 'T("Name", exists) * T("Birthday", date, exists)'


# --- Errors ------------------------------------------------------------------------------


def _error(text: str) -> SegmentSyntaxError:
    with pytest.raises(SegmentSyntaxError) as caught:
        parse(text)
    return caught.value


def _assert_caret(error: SegmentSyntaxError, source_line: str) -> None:
    *_, shown, caret = str(error).splitlines()
    assert shown.strip() == source_line.strip()
    assert caret.strip() == "^"
    # The caret sits under the column, in the same indent as the shown line.
    indent = len(shown) - len(source_line)
    assert caret.index("^") - indent == error.column - 1


@pytest.mark.parametrize(
    ("text", "line", "column", "message"),
    [
        # Syntax: what was expected, where.
        ('(T("Age", gt, 18)', 1, 18, "expected ')'"),
        ('T("Age", gt, 18) * X("a")', 1, 20, "unknown function 'X'"),
        ('T("a", eq, 1) T("b", eq, 2)', 1, 15, "unexpected 'T'"),
        ('E("X", count > 2)', 1, 14, "expected one of: '<=', '=', '>=', 'between'"),
        ('E("X", last 5 weeks)', 1, 15, "unexpected 'weeks'"),
        ('E("X", everything)', 1, 8, "unexpected 'everything'"),
        ('T("x", eq, "open)', 1, 12, "a string that is not closed"),
        ("", 1, 1, "expected one of: a condition"),
        # Semantics: the condition (or the word) that does not fit.
        ('T("Age", gt, "x")', 1, 1, "operator 'gt' does not apply to string tags"),
        ('S("a") +\n  T("Name", foo, 1)', 2, 13, "unknown operator 'foo'"),
        ('T("Age", number, gt, 1)', 1, 10, "unknown type 'number'"),
        ('T("Age", eq)', 1, 10, "'eq' needs an operand"),
        ('T("Signup", within_last, days_ago(3))', 1, 26, "takes a number of days"),
        ('T("Age", eq, 1.5)', 1, 14, "a decimal number is only an operand inside price"),
        ('T("Age", integer, eq, "x")', 1, 1, "an integer tag needs an integer operand"),
        ('T("Day", date, eq, version("1"))', 1, 20, "a version operand does not fit a date"),
        ('T("Spent", gt, price(1, "EU"))', 1, 16, "currency"),
        ('T("Day", gt, days_ago(-1))', 1, 23, "expected a whole number >= 0"),
        ('T("Day", gt, date("yesterday"))', 1, 14, "not a date"),
        ('T("App", gt, version("1.x"))', 1, 14, "version must be"),
        ('E("X", count >= 1, exactly 3 hours ago)', 1, 20, "counts in days"),
        ('E("X",\n  between 7 and 3 days ago)', 2, 3, "needs n < m"),
        ('E("X", count between 5 and 2)', 1, 8, "count bounds"),
        ('E("X", between date("2026-02-01") and date("2026-01-01"))', 1, 8, "start <= end"),
        ('L("X", before, 5 days)', 1, 1, "'before' needs date(...) or days_ago(N)"),
        ('L("X", within, days_ago(5))', 1, 16, "'within' needs a duration"),
        ('L("X", since, days_ago(5))', 1, 8, "unknown operator 'since'"),
        ("M(open)", 1, 3, "unknown message action 'open'"),
        ('M(opened, channel "a", channel "b")', 1, 24, "channel is given twice"),
        ('S("Not An Id")', 1, 1, "'Not An Id' is not a segment id"),
        ('T("", exists)', 1, 1, "tag"),
    ],
)
def test_errors_point_at_line_and_column(text: str, line: int, column: int, message: str) -> None:
    error = _error(text)
    assert (error.line, error.column) == (line, column)
    assert message in error.message
    assert isinstance(error, ValueError)
    _assert_caret(error, text.split("\n")[line - 1])


def test_error_message_shape() -> None:
    error = _error('T("Country", eq, "FR") *\n  T("Age", gt, "x")')
    assert str(error) == (
        "line 2, column 3: operator 'gt' does not apply to string tags"
        " (use one of eq, exists, in, not_exists, noteq, notin)\n"
        '      T("Age", gt, "x")\n'
        "      ^"
    )
    assert error.expected == ()
    syntax = _error('T("Country", eq "FR")')
    assert syntax.expected == ("')'", "','")
    assert syntax.source_line == 'T("Country", eq "FR")'


def test_long_lines_are_shown_around_the_column() -> None:
    text = " + ".join(['S("a")'] * 40 + ['S("Bad")'] + ['S("b")'] * 40)
    error = _error(text)
    *_, shown, caret = str(error).splitlines()
    assert shown.strip().startswith("...")
    assert shown.endswith("...")
    assert shown[caret.index("^") :].startswith('S("Bad")')


def test_error_survives_pickling() -> None:
    error = _error("S(")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.line, copy.column, str(copy)) == (error.line, error.column, str(error))


def test_model_rules_hold_for_text_as_for_json() -> None:
    # The same refusal as the model's, so the language adds no rules of its own.
    with pytest.raises(ValidationError):
        TagCondition(tag="Age", type=TagType.STRING, op=Op.GT, value="x")
    with pytest.raises(SegmentSyntaxError):
        parse('T("Age", gt, "x")')


def test_relative_and_absolute_instants_in_windows() -> None:
    start = datetime(2026, 1, 1, 9, 30, 15, 250000, tzinfo=UTC)
    window = Window(kind="between_dates", start=start, end=start + timedelta(microseconds=1))
    text = format(event("X", window=window))
    assert text == (
        'E("X", count >= 1, between date("2026-01-01T09:30:15.250Z")'
        ' and date("2026-01-01T09:30:15.250001Z"))'
    )
    assert parse(text) == event("X", window=window)


# --- The docs ----------------------------------------------------------------------------

_DOCS = Path(__file__).resolve().parents[2] / "docs" / "segments.md"
_BLOCK = re.compile(r"(?P<marker><!-- segment-error -->\n)?```segment\n(?P<body>.*?)\n```", re.S)


def _language_section() -> str:
    text = _DOCS.read_text(encoding="utf-8")
    start = text.index("## The segmentation language")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)]


def test_docs_examples_parse() -> None:
    blocks = [match for match in _BLOCK.finditer(_language_section()) if not match["marker"]]
    assert len(blocks) >= 4
    for block in blocks:
        condition = parse(block["body"])
        assert parse(format(condition)) == condition


def test_docs_error_examples_are_what_parse_says() -> None:
    section = _language_section()
    errors = [match for match in _BLOCK.finditer(section) if match["marker"]]
    assert errors
    for match in errors:
        shown = re.compile(r"\s*```text\n(.*?)\n```", re.S).match(section, match.end())
        assert shown is not None
        assert str(_error(match["body"])) == shown[1]


def test_docs_operator_table_matches_the_model() -> None:
    rows = re.findall(r"^\| (\w+) \| (`\w+`(?:, `\w+`)*) \|$", _language_section(), re.M)
    table = {TagType(name): {Op(op) for op in re.findall(r"`(\w+)`", ops)} for name, ops in rows}
    assert table == {tag_type: set(ops) for tag_type, ops in OPERATORS.items()}


def test_limits_on_terms_depth_and_length() -> None:
    term = 'T("Country", eq, "PT")'
    assert parse(" + ".join([term] * MAX_TERMS)) is not None
    with pytest.raises(SegmentSyntaxError) as error:
        parse(" + ".join([term] * (MAX_TERMS + 1)))
    # Points at the first term over the limit.
    assert error.value.message == f"term {MAX_TERMS + 1} is over the limit of {MAX_TERMS} terms"
    assert error.value.column == MAX_TERMS * (len(term) + 3) + 1
    # Attribute filters count as terms.
    filters = " * ".join([f'A("plan", eq, "{n}")' for n in range(MAX_TERMS)])
    with pytest.raises(SegmentSyntaxError, match=f"over the limit of {MAX_TERMS} terms"):
        parse(f'E("Purchase", where {filters})')
    assert parse("(" * MAX_DEPTH + term + ")" * MAX_DEPTH) is not None  # parentheses alone
    nested = term
    for _ in range(MAX_DEPTH + 1):
        nested = f"all({nested})"
    with pytest.raises(SegmentSyntaxError, match=f"over the limit of {MAX_DEPTH}"):
        parse(nested)
    # A flat chain of - is one level, whatever its length.
    assert parse(" - ".join([term] * MAX_TERMS)) is not None
    long = f'T("Country", in, [{", ".join(["0123456789"] * 5000)}])'
    with pytest.raises(SegmentSyntaxError, match=f"over the limit of {MAX_EXPRESSION_CHARS}"):
        parse(long)
