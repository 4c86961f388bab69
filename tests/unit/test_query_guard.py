"""The analysts' query door: an allow-list over the parsed query (projections/query_guard.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from projections.query_guard import QueryRefused, check_explain_ast, check_query

DB = "reach"

ALLOWED = [
    "SELECT 1",
    "select count() from events",
    "SELECT user_id, count() AS n FROM reach.events GROUP BY user_id ORDER BY n DESC LIMIT 10",
    "WITH recent AS (SELECT * FROM events WHERE ts > now() - INTERVAL 7 DAY) "
    "SELECT count() FROM recent",
    "SELECT 1 UNION ALL SELECT 2",
    "SELECT * FROM events e LEFT JOIN (SELECT * FROM tag_updates) t USING user_id",
    "SELECT * FROM events WHERE user_id IN (SELECT user_id FROM segment_memberships)",
    "SELECT * FROM events WHERE user_id IN ('a', 'b')",
    "SELECT sum(number) FROM numbers(10)",
    "SELECT name FROM system.tables WHERE database = 'reach'",
    "SELECT name, type FROM system.columns WHERE table = 'events'",
    "SELECT journey_id FROM journey_stats WHERE has({journeys:Array(String)}, journey_id)",
    "SELECT countIf(kind = 'sent'), uniqExact(user_id), quantile(0.9)(x) FROM feedback",
    "SELECT arrayJoin([1, 2]) AS x",
    "SELECT 'file(''/etc/passwd'')' AS not_a_call",
    "SELECT 1 -- INTO OUTFILE '/tmp/x'\n",
    "SELECT 1 /* SETTINGS readonly=0 */",
    "SELECT URLHierarchy('https://a.example/b')",
    "select 1;",
]

REFUSED = [
    # reading files and other places
    ("SELECT extract(file('/proc/self/environ'), 'X=(.*)')", "file"),
    ("SELECT FILE('/etc/passwd')", "file"),
    ("SELECT `file`('/etc/passwd')", "file"),
    ("SELECT * FROM file('/etc/passwd', 'CSV')", "file"),
    ("select * from events e join url('http://127.0.0.1/', CSV) u on e.a = u.a", "url"),
    ("SELECT * FROM events WHERE user_id IN (SELECT * FROM s3('http://x/y'))", "s3"),
    ("WITH t AS (SELECT * FROM remote('127.0.0.1', system.one)) SELECT * FROM t", "remote"),
    ("SELECT * FROM (SELECT * FROM (SELECT * FROM hdfs('hdfs://x/y')))", "hdfs"),
    ("SELECT * FROM remoteSecure('h', db.t)", "remoteSecure"),
    ("SELECT * FROM cluster('c', system.one)", "cluster"),
    ("SELECT * FROM executable('x.sh', TSV, 'a String')", "executable"),
    ("SELECT * FROM input('a String')", "input"),
    ("SELECT * FROM mysql('h:3306', 'd', 't', 'u', 'p')", "mysql"),
    ("SELECT * FROM postgresql('h', 'd', 't', 'u', 'p')", "postgresql"),
    ("SELECT * FROM jdbc('x', 'y')", "jdbc"),
    ("SELECT * FROM odbc('x', 'y', 'z')", "odbc"),
    ("SELECT dictGet('d', 'attr', toUInt64(1))", "dictGet"),
    ("SELECT dictGetString('d', 'attr', toUInt64(1))", "dictGetString"),
    ("SELECT joinGet('db.j', 'v', 1)", "joinGet"),
    ("SELECT * FROM merge(currentDatabase(), '.*')", "merge"),
    ("SELECT * FROM view(SELECT 1)", "view"),
    ("SELECT (SELECT count() FROM file('/etc/passwd', 'LineAsString'))", "file"),
    ("SELECT * FROM events WHERE x = (SELECT max(y) FROM url('http://x', CSV, 'y Int'))", "url"),
    ("SeLeCt FiLe('/etc/passwd')", "file"),
    ("SELECT/**/file/**/('/etc/passwd')", "file"),
    ("SELECT -- c\n file('/etc/passwd')", "file"),
    ("SELECT * FROM events WHERE user_id GLOBAL IN (SELECT x FROM remote('h', db.t))", "remote"),
    ("SELECT * FROM events AS e, url('http://x', CSV, 'a String') AS u", "url"),
    ("WITH (SELECT any(x) FROM file('/etc/passwd', 'LineAsString')) AS s SELECT s", "file"),
    ("SELECT 1 UNION ALL SELECT * FROM file('/etc/passwd', 'LineAsString')", "file"),
    ("SELECT dictHas('d', toUInt64(1))", "dictHas"),
    ("SELECT * FROM s3Cluster('c', 'http://x')", "s3Cluster"),
    ("SELECT * FROM azureBlobStorage('x')", "azureBlobStorage"),
    ("SELECT hasColumnInTable('system', 'users', 'name')", "hasColumnInTable"),
    ("SELECT logTrace('x')", "logTrace"),
    ("SELECT * FROM generateRandom('a Int8')", "generateRandom"),
    ("SELECT * FROM clusterAllReplicas('c', system.one)", "clusterAllReplicas"),
    # writing files
    ("SeLeCt 1 InTo OuTfIlE '/tmp/x'", "INTO OUTFILE"),
    ("SELECT 1 INTO /* c */ OUTFILE '/tmp/x'", "INTO OUTFILE"),
    ("SELECT 'x' INTO OUTFILE '/tmp/zz.pth'", "INTO OUTFILE"),
    ("select 'x' into outfile '/tmp/zz.pth' truncate", "INTO OUTFILE"),
    ("SELECT 'x' INTO OUTFILE '/tmp/zz.pth' APPEND", "INTO OUTFILE"),
    ("INSERT INTO events FROM INFILE '/etc/passwd' FORMAT CSV", "INSERT"),
    # other statements
    ("INSERT INTO events (event_id) VALUES ('x')", "INSERT"),
    ("DROP TABLE events", "DROP"),
    ("SELECT 1; DROP TABLE events", "one statement"),
    ("SELECT 1; SELECT 2", "one statement"),
    ("SHOW TABLES", "SELECT"),
    ("EXPLAIN SELECT 1", "SELECT"),
    ("KILL QUERY WHERE 1", "SELECT"),
    ("SET readonly = 0", "SELECT"),
    # settings and output format
    ("SELECT 1 SETTINGS readonly = 0", "SETTINGS"),
    ("SELECT 1 settings max_execution_time = 0", "SETTINGS"),
    ("SELECT * FROM (SELECT 1 SETTINGS max_result_rows = 0)", "SETTINGS"),
    ("SELECT 1 FORMAT JSON", "FORMAT"),
    # tables outside the analysts' reach
    ("SELECT * FROM system.users", "system.users"),
    ("SELECT * FROM SYSTEM.processes", "processes"),
    ("SELECT * FROM events JOIN system.settings ON 1 = 1", "system.settings"),
    ("SELECT * FROM other_db.secrets", "other_db.secrets"),
    ("SELECT * FROM a.b.c", "a.b.c"),
    ("SELECT * FROM information_schema.tables", "information_schema"),
    ("SELECT * FROM events WHERE user_id IN system.users", "system.users"),
    ("SELECT * FROM {t:Identifier}", "Identifier"),
    ("SELECT {t:Identifier}", "Identifier"),
    # not SQL the parser can vouch for
    ("SELECT (", "parse"),
    ("", "empty"),
]


@pytest.mark.parametrize("sql", ALLOWED)
def test_analyst_queries_pass(sql: str) -> None:
    check_query(sql, DB)


@pytest.mark.parametrize(("sql", "named"), REFUSED)
def test_hostile_queries_are_refused_naming_the_construct(sql: str, named: str) -> None:
    with pytest.raises(QueryRefused) as refused:
        check_query(sql, DB)
    message = str(refused.value)
    assert named.lower() in message.lower(), message
    assert "\n" not in message


def test_a_very_long_query_is_refused() -> None:
    with pytest.raises(QueryRefused, match="characters"):
        check_query("SELECT " + " + ".join(["1"] * 40_000), DB)


def test_another_database_name_is_the_analysts_one() -> None:
    check_query("SELECT * FROM analytics.events", "analytics")
    with pytest.raises(QueryRefused, match=r"reach\.events"):
        check_query("SELECT * FROM reach.events", "analytics")


# ClickHouse's own parse (EXPLAIN AST), checked too: what sqlglot read is what runs.
_FILE_AST = """SelectWithUnionQuery (children 1)
 ExpressionList (children 1)
  SelectQuery (children 1)
   ExpressionList (children 1)
    Function extract (children 1)
     ExpressionList (children 2)
      Function file (children 1)
       ExpressionList (children 1)
        Literal '/etc/passwd'
      Literal 'x'
"""
_OUTFILE_AST = """SelectWithUnionQuery (children 2)
 ExpressionList (children 1)
  SelectQuery (children 1)
   ExpressionList (children 1)
    Literal UInt64_1
 Literal '/tmp/x'
"""
_TABLE_FUNCTION_AST = """SelectWithUnionQuery (children 1)
 ExpressionList (children 1)
  SelectQuery (children 2)
   ExpressionList (children 1)
    Asterisk
   TablesInSelectQuery (children 1)
    TablesInSelectQueryElement (children 1)
     TableExpression (children 1)
      Function url (alias u) (children 1)
       ExpressionList (children 1)
        Literal 'http://x'
"""
_SYSTEM_AST = """SelectWithUnionQuery (children 1)
 ExpressionList (children 1)
  SelectQuery (children 2)
   ExpressionList (children 1)
    Asterisk
   TablesInSelectQuery (children 1)
    TablesInSelectQueryElement (children 1)
     TableExpression (children 1)
      TableIdentifier system.users (alias u)
"""
_SETTINGS_AST = """SelectWithUnionQuery (children 1)
 ExpressionList (children 1)
  SelectQuery (children 2)
   ExpressionList (children 1)
    Literal UInt64_1
   Set
"""
_FINE_AST = """SelectWithUnionQuery (children 1)
 ExpressionList (children 1)
  SelectQuery (children 2)
   ExpressionList (children 1)
    Function count (children 1)
     ExpressionList
   TablesInSelectQuery (children 2)
    TablesInSelectQueryElement (children 1)
     TableExpression (children 1)
      TableIdentifier events (alias e)
    TablesInSelectQueryElement (children 1)
     TableExpression (children 1)
      Function numbers (children 1)
       ExpressionList (children 1)
        Literal UInt64_10
"""


@pytest.mark.parametrize(
    ("ast", "named"),
    [
        (_FILE_AST, "file"),
        (_OUTFILE_AST, "INTO OUTFILE"),
        (_TABLE_FUNCTION_AST, "url"),
        (_SYSTEM_AST, "system.users"),
        (_SETTINGS_AST, "SETTINGS"),
        ("InsertQuery (children 1)\n Identifier events\n", "SELECT"),
    ],
)
def test_clickhouse_own_parse_is_checked_too(ast: str, named: str) -> None:
    with pytest.raises(QueryRefused, match=named):
        check_explain_ast(ast, DB)


def test_clickhouse_own_parse_of_a_fine_query_passes() -> None:
    check_explain_ast(_FINE_AST, DB)


def test_the_clients_own_format_is_told_apart() -> None:
    with_format = _FINE_AST + " Identifier TabSeparatedRaw\n"
    check_explain_ast(with_format, DB, "TabSeparatedRaw")
    with pytest.raises(QueryRefused, match="Identifier"):
        check_explain_ast(with_format, DB)
    with pytest.raises(QueryRefused, match="Identifier"):
        check_explain_ast(with_format + " Identifier TabSeparatedRaw\n", DB, "TabSeparatedRaw")


_WORDS = [
    "SELECT",
    "FROM",
    "WHERE",
    "file",
    "(",
    ")",
    "'x'",
    ",",
    "INTO",
    "OUTFILE",
    "SETTINGS",
    "readonly",
    "=",
    "0",
    ";",
    "--",
    "/*",
    "*/",
    "system.users",
    "events",
    "IN",
    "WITH",
    "AS",
    "t",
    "UNION",
    "ALL",
    "{p:Identifier}",
    "`",
    "\\",
    "$$",
    "JOIN",
    "url",
    "numbers(1)",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_WORDS), max_size=14), st.text(max_size=20))
def test_any_text_is_passed_or_refused_never_crashes(words: list[str], tail: str) -> None:
    sql = " ".join(words) + tail
    message = ""
    try:
        check_query(sql, DB)
    except QueryRefused as refused:
        message = str(refused)
    assert "\n" not in message
