"""The analysts' query door: what a query may read, decided over the parsed query.

ClickHouse's ``readonly=1`` refuses writes and DDL but not its scalar ``file()``
function (it reads any file the process can) nor ``SELECT … INTO OUTFILE`` (it
writes one), and any table function can reach another host. So an analyst's query
passes two checks before it runs, both over a parse tree, never over substrings:

1. ``check_query``: sqlglot's ClickHouse dialect. Pure Python, so the allow-list is
   tested without an engine, and its tree is rich (statement kinds, WITH, IN, joins,
   SETTINGS and FORMAT clauses, query parameters and their types).
2. ``check_explain_ast``: ClickHouse's own parser (``EXPLAIN AST``), read back. Two
   parsers can disagree on an odd string or comment; the engine's own parse is what
   runs, so the constructs that reach outside (functions, table sources, INTO
   OUTFILE, SETTINGS) are checked again in the engine's view of the query.

The original text runs, not sqlglot's regeneration of it: regeneration is lossy for
ClickHouse (``toStartOfDay`` becomes ``dateTrunc``, lambdas change), so it would
answer a different query than the analyst wrote.

Rules: a single SELECT (WITH, UNION, subqueries, joins allowed); table sources are
the tables and views of the analysts' database (unqualified, or qualified with its
name), a few ``system`` tables (``SYSTEM_TABLES``) and harmless generators
(``TABLE_FUNCTIONS``); every other table function is refused; functions that read or
write outside the database (``DENIED_FUNCTIONS``, ``DENIED_PREFIXES``) are refused
anywhere; no SETTINGS, FORMAT or INTO clause; no ``Identifier`` query parameters
(they name tables).
"""

from __future__ import annotations

import itertools
import re

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokenizer_core import TokenType

MAX_QUERY_CHARS = 100_000

SYSTEM_TABLES = frozenset({"one", "numbers", "tables", "columns"})
"""``system`` tables analysts may read: the one-row table, the number generator, and
the tables and columns lists (on a server, ClickHouse shows a user only the tables
it is granted)."""

TABLE_FUNCTIONS = frozenset(
    {"numbers", "numbers_mt", "zeros", "zeros_mt", "generate_series", "generateseries"}
)
"""Table functions that only generate rows (lower case)."""

DENIED_FUNCTIONS = frozenset(
    {
        "file",
        "filecluster",
        "url",
        "urlcluster",
        "input",
        "mysql",
        "postgresql",
        "jdbc",
        "odbc",
        "mongodb",
        "redis",
        "sqlite",
        "gcs",
        "oss",
        "cosn",
        "hive",
        "merge",
        "view",
        "loop",
        "format",
        "showcertificate",
        "getclienthttpheader",
        "naivebayesclassifier",
        "evalmlmethod",
        "getmacro",
        "getserversetting",
        "__getscalar",
        "modelevaluate",
        "hascolumnintable",
        "logtrace",
    }
)
"""Functions (scalar or table, lower case) that read or write outside the database,
or reach data the analysts' tables do not hold."""

DENIED_PREFIXES = (
    "dict",  # dictGet*, dictHas, dictIsIn: a dictionary's source can be a file or a program
    "joinget",
    "s3",
    "hdfs",
    "remote",
    "cluster",
    "executable",
    "azure",
    "iceberg",
    "deltalake",
    "hudi",
    "paimon",
    "filesystem",
    "catboost",
    "addressto",
    "mergetree",
    "arrowflight",
    "ytsaurus",
)

_SELECTS = (exp.Select, exp.SetOperation, exp.Subquery)
_CLAUSES = {"settings": "SETTINGS", "format": "FORMAT"}


class QueryRefused(ValueError):
    """A query the analysts' door does not run; the message names the construct."""


def check_query(sql: str, database: str) -> None:
    """Raise ``QueryRefused`` unless ``sql`` is a single SELECT that reads only what
    analysts may read (see the module's rules)."""
    if len(sql) > MAX_QUERY_CHARS:
        raise QueryRefused(f"query has {len(sql)} characters, over the limit of {MAX_QUERY_CHARS}")
    if not sql.strip():
        raise QueryRefused("empty query")
    _check_tokens(sql)
    try:
        statements = [s for s in sqlglot.parse(sql, read="clickhouse") if s is not None]
    except (ParseError, TokenError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else "syntax error"
        raise QueryRefused(f"cannot parse the query: {first}") from None
    except RecursionError:
        raise QueryRefused("cannot parse the query: nested too deeply") from None
    if len(statements) != 1:
        raise QueryRefused(f"one statement only: found {len(statements)} separated by ';'")
    tree = statements[0]
    if not isinstance(tree, _SELECTS):
        raise QueryRefused(f"only a SELECT is allowed, not {_statement_name(tree, sql)}")
    ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    for node in tree.walk():
        _check_node(node, database, ctes)


def _check_tokens(sql: str) -> None:
    """Clearer refusals for clauses the parser does not know (it would only say
    "unexpected token"); over tokens, so strings and comments do not count."""
    try:
        tokens = sqlglot.Dialect.get_or_raise("clickhouse").tokenize(sql)
    except (TokenError, ParseError) as error:
        raise QueryRefused(f"cannot read the query: {str(error).splitlines()[0]}") from None
    if tokens and tokens[0].token_type not in (TokenType.SELECT, TokenType.WITH, TokenType.L_PAREN):
        raise QueryRefused(f"only a SELECT is allowed, not {tokens[0].text.upper()}")
    for before, token in itertools.pairwise(tokens):
        pair = (before.text.upper(), token.text.upper())
        if token.token_type == TokenType.STRING:
            continue
        if pair == ("INTO", "OUTFILE"):
            raise QueryRefused("INTO OUTFILE is not allowed: queries never write files")
        if pair == ("FROM", "INFILE"):
            raise QueryRefused("FROM INFILE is not allowed: queries never read files")


def _statement_name(tree: exp.Expr, sql: str) -> str:
    if isinstance(tree, exp.Command):
        return str(tree.this).upper()
    return tree.key.upper() if tree.key else sql.split(None, 1)[0].upper()


def _check_node(node: exp.Expr, database: str, ctes: set[str]) -> None:
    for arg, clause in _CLAUSES.items():
        if node.args.get(arg):
            raise QueryRefused(f"a {clause} clause is not allowed in analysts' queries")
    if isinstance(node, exp.Into):
        raise QueryRefused("INTO is not allowed: queries never write")
    if isinstance(node, exp.Command | exp.DML | exp.DDL):
        raise QueryRefused(f"only a SELECT is allowed, not {node.key.upper()}")
    if isinstance(node, exp.Placeholder) and _is_identifier_kind(node):
        raise QueryRefused("query parameters of type Identifier are not allowed (they name tables)")
    if isinstance(node, exp.Func):
        name = function_name(node)
        if is_denied_function(name):
            raise QueryRefused(f"function {name}() reaches outside the database")
    if isinstance(node, exp.Table):
        _check_table(node, database, ctes)
    if isinstance(node, exp.In) and isinstance(node.args.get("field"), exp.Column):
        field = node.args["field"]
        _check_table_name(field.table or None, field.name, None, database, ctes)


def _is_identifier_kind(node: exp.Placeholder) -> bool:
    kind = node.args.get("kind")
    if isinstance(kind, exp.Expression):
        kind = kind.sql("clickhouse")
    return kind is not None and "identifier" in str(kind).lower()


def function_name(node: exp.Func) -> str:
    """The name as written for functions sqlglot does not know, its SQL name otherwise."""
    if isinstance(node, exp.Anonymous):
        return str(node.name)
    return node.sql_name()


def is_denied_function(name: str) -> bool:
    lowered = name.lower()
    return lowered in DENIED_FUNCTIONS or lowered.startswith(DENIED_PREFIXES)


def _check_table(node: exp.Table, database: str, ctes: set[str]) -> None:
    source = node.this
    if isinstance(source, exp.Func):
        name = function_name(source)
        if name.lower() not in TABLE_FUNCTIONS:
            raise QueryRefused(
                f"table function {name}() is not allowed; "
                f"allowed: {', '.join(sorted(TABLE_FUNCTIONS))}"
            )
        return
    if isinstance(source, exp.Placeholder):
        raise QueryRefused("a query parameter cannot name a table (type Identifier)")
    if not isinstance(source, exp.Identifier):
        raise QueryRefused(f"unsupported table source {source.key.upper()}")
    _check_table_name(node.db or None, node.name, node.catalog or None, database, ctes)


def _check_table_name(
    db: str | None, name: str, catalog: str | None, database: str, ctes: set[str]
) -> None:
    shown = ".".join(part for part in (catalog, db, name) if part)
    if catalog:
        raise QueryRefused(f"table {shown} is not allowed: use {database}.TABLE or TABLE")
    if db is None:
        return  # the analysts' database (the session's current one) or a WITH name
    if db == database:
        return
    if db.lower() == "system" and name.lower() in SYSTEM_TABLES:
        return
    allowed = ", ".join(f"system.{table}" for table in sorted(SYSTEM_TABLES))
    raise QueryRefused(f"table {shown} is not allowed: only the {database} database and {allowed}")


# EXPLAIN AST lines read: indentation, node kind, then the node's own text.
_AST_LINE = re.compile(r"^(?P<indent> *)(?P<kind>\S+)(?: (?P<rest>.*))?$")


def check_explain_ast(text: str, database: str, output_format: str | None = None) -> None:
    """Check ClickHouse's own parse of a query (``EXPLAIN AST`` output): one
    SelectWithUnionQuery with nothing after its select list (INTO OUTFILE and FORMAT
    hang there), no Set (SETTINGS), denied functions nowhere, table functions and
    tables as ``check_query`` allows them. ``output_format``: the FORMAT the client
    appended to the EXPLAIN itself, which ClickHouse hangs on the explained query."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or not lines[0].startswith("SelectWithUnionQuery"):
        head = lines[0].split()[0] if lines else "nothing"
        raise QueryRefused(f"only a SELECT is allowed, not {head}")
    parents: list[str] = []
    for line in lines:
        match = _AST_LINE.match(line)
        if match is None:
            raise QueryRefused("cannot read ClickHouse's parse of the query")
        depth, kind, rest = len(match["indent"]), match["kind"], match["rest"] or ""
        del parents[depth:]
        parent = parents[-1] if parents else ""
        if depth == 1 and output_format and kind == "Identifier" and rest == output_format:
            output_format = None  # the client's own FORMAT, once
        elif depth == 1 and kind != "ExpressionList":
            clause = "INTO OUTFILE" if kind == "Literal" else f"{kind} after the select list"
            raise QueryRefused(f"{clause} is not allowed in analysts' queries")
        if kind == "Set":
            raise QueryRefused("a SETTINGS clause is not allowed in analysts' queries")
        if kind == "Function":
            name = rest.split(" ", 1)[0]
            if is_denied_function(name):
                raise QueryRefused(f"function {name}() reaches outside the database")
            if parent == "TableExpression" and name.lower() not in TABLE_FUNCTIONS:
                raise QueryRefused(f"table function {name}() is not allowed")
        if kind == "TableIdentifier":
            qualified = rest.split(" ", 1)[0]
            db, _, name = qualified.rpartition(".")
            _check_table_name(db or None, name, None, database, set())
        parents.append(kind)
