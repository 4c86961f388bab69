"""Docs that run: the examples of docs/contracts.md, the settings table of
docs/configuration.md and the deployment files are checked against the code.

An example in docs/contracts.md is a fenced block right after a marker comment:

    <!-- example: KIND [name=value ...] -->

KIND is ``event``, ``tag-update``, ``feedback`` or ``device-update`` (valid: one
object, or an array as in a batch record), ``invalid-<kind>`` with ``reason=`` (and
``index=`` for a batch item), ``<kind>-request`` (an HTTP ingest body),
``http-answer``, ``query-request``, ``python`` or ``sql``. Valid examples sharing
``same-id=`` must get the same derived id; ``partitions=`` and ``partition=`` state
where a batch's users belong.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr

from engine.codecs import InputCodec
from schemas import DeadLetter, DeadLetterReason, Event, Feedback, TagUpdate
from schemas.devices import DeviceUpdate
from streams.partitioning import partition_for
from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
CONTRACTS = ROOT / "docs" / "contracts.md"
CONFIGURATION = ROOT / "docs" / "configuration.md"
DEPLOY = ROOT / "deploy"

MODELS: dict[str, type[BaseModel]] = {
    "event": Event,
    "tag-update": TagUpdate,
    "feedback": Feedback,
    "device-update": DeviceUpdate,
}
ID_FIELDS = {
    "event": "event_id",
    "tag-update": "update_id",
    "feedback": "feedback_id",
    "device-update": "update_id",
}
KINDS = {
    *MODELS,
    *(f"invalid-{kind}" for kind in MODELS),
    *(f"{kind}-request" for kind in MODELS),
    "http-answer",
    "query-request",
    "python",
    "sql",
}

_MARKER = re.compile(
    r"<!--\s*example:\s*(?P<kind>[\w-]+)(?P<attrs>(?:\s+[\w-]+=[^\s>]+)*)\s*-->[ \t]*\n"
    r"\s*```(?P<lang>[\w-]*)\n(?P<body>.*?)\n```",
    re.S,
)
_FENCE = re.compile(r"^```(?P<lang>[\w-]*)\n(?P<body>.*?)\n^```", re.S | re.M)


@dataclass(frozen=True)
class Example:
    kind: str
    attrs: dict[str, str]
    lang: str
    body: str
    line: int

    def __str__(self) -> str:
        return f"docs/contracts.md:{self.line} ({self.kind})"


def _examples() -> list[Example]:
    text = CONTRACTS.read_text(encoding="utf-8")
    found = []
    for match in _MARKER.finditer(text):
        attrs = dict(pair.split("=", 1) for pair in match["attrs"].split())
        line = text.count("\n", 0, match.start()) + 1
        found.append(Example(match["kind"], attrs, match["lang"], match["body"], line))
    return found


EXAMPLES = _examples()


def _of(*kinds: str) -> list[Example]:
    return [example for example in EXAMPLES if example.kind in kinds]


def _codec(kind: str) -> InputCodec[Any]:
    return InputCodec(MODELS[kind], Settings().max_record_bytes)


# --- the markers themselves ---------------------------------------------------------


def test_every_marker_is_read() -> None:
    """A marker with a typo, or not right before a fence, would silently check nothing."""
    text = CONTRACTS.read_text(encoding="utf-8")
    assert text.count("<!-- example:") == len(EXAMPLES)
    for example in EXAMPLES:
        assert example.kind in KINDS, example


def test_there_are_examples_of_every_kind() -> None:
    kinds = {example.kind for example in EXAMPLES}
    assert kinds >= {*MODELS, *(f"invalid-{kind}" for kind in MODELS), "sql", "python"}


def test_every_json_fence_is_json() -> None:
    text = CONTRACTS.read_text(encoding="utf-8")
    fences = [match for match in _FENCE.finditer(text) if match["lang"] == "json"]
    assert fences
    for match in fences:
        json.loads(match["body"])


# --- valid and invalid records ------------------------------------------------------


@pytest.mark.parametrize("example", _of(*MODELS), ids=str)
def test_valid_example(example: Example) -> None:
    document = json.loads(example.body)
    items = document if isinstance(document, list) else [document]
    assert items, example
    decoded = _codec(example.kind).decode(example.body.encode())
    assert not decoded.rejected, (example, decoded.rejected)
    assert len(decoded.items) == len(items)
    if "partitions" in example.attrs:
        partitions = int(example.attrs["partitions"])
        owners = {partition_for(item["user_id"], partitions) for item in items}
        assert owners == {int(example.attrs.get("partition", min(owners)))}, example


def test_examples_with_the_same_content_get_the_same_id() -> None:
    groups: dict[tuple[str, str], set[str]] = {}
    for example in _of(*MODELS):
        if "same-id" in example.attrs:
            model = _codec(example.kind).decode(example.body.encode()).items[0]
            ids = groups.setdefault((example.kind, example.attrs["same-id"]), set())
            ids.add(getattr(model, ID_FIELDS[example.kind]))
    assert groups
    for group, ids in groups.items():
        assert len(ids) == 1, group


@pytest.mark.parametrize("example", _of(*(f"invalid-{kind}" for kind in MODELS)), ids=str)
def test_invalid_example_is_rejected_with_its_reason(example: Example) -> None:
    kind = example.kind.removeprefix("invalid-")
    decoded = _codec(kind).decode(example.body.encode())
    assert len(decoded.rejected) == 1, (example, decoded.rejected)
    rejected = decoded.rejected[0]
    assert rejected.reason == DeadLetterReason(example.attrs["reason"]), (example, rejected)
    index = example.attrs.get("index")
    assert rejected.index == (None if index is None else int(index)), example
    if rejected.index is not None:
        assert len(decoded.items) == len(json.loads(example.body)) - 1


# --- the reason codes and dead-letter headers ------------------------------------------


def _section(title: str) -> str:
    text = CONTRACTS.read_text(encoding="utf-8")
    start = text.index(title)
    end = text.find("\n## ", start + len(title))
    return text[start : end if end != -1 else None]


def test_reason_table_lists_every_reason_once() -> None:
    rows = re.findall(r"^\| `(\w+)` \|", _section("### Reason codes"), re.M)
    assert sorted(rows) == sorted(reason.value for reason in DeadLetterReason)


def test_every_reason_but_too_large_and_tombstone_has_an_invalid_example() -> None:
    shown = {example.attrs["reason"] for example in _of(*(f"invalid-{k}" for k in MODELS))}
    # too_many_devices: the engine's refusal of a valid record (tests/unit/test_devices.py).
    unshown = {"too_large", "tombstone", "too_many_devices"}
    assert shown == {reason.value for reason in DeadLetterReason} - unshown


def test_too_large_is_what_the_docs_say() -> None:
    limit = 1024
    codec = InputCodec(Event, limit)
    decoded = codec.decode(b"[" + b" " * limit + b"]")
    assert [(r.index, r.reason) for r in decoded.rejected] == [(None, DeadLetterReason.TOO_LARGE)]


def test_dead_letter_headers_are_documented() -> None:
    letter = DeadLetter(
        raw=b"{}", key=None, source_topic="reach.events", source_partition=0,
        source_offset=0, source_index=None, reason=DeadLetterReason.NOT_JSON, detail="",
        at=datetime.now(UTC),
    )  # fmt: skip
    section = _section("## The dead-letter topic")
    for name, _value in letter.headers():
        assert f"| `{name}` |" in section, name


# --- HTTP bodies and answers ----------------------------------------------------------


@pytest.mark.parametrize("example", _of(*(f"{kind}-request" for kind in MODELS)), ids=str)
def test_ingest_request_example(example: Example) -> None:
    kind = example.kind.removesuffix("-request")
    if example.lang == "json":
        body = json.loads(example.body)
        items = body["items"] if isinstance(body, dict) and "items" in body else body
        items = items if isinstance(items, list) else [items]
    else:  # NDJSON
        items = [json.loads(line) for line in example.body.splitlines() if line.strip()]
    decoded = _codec(kind).validate_items(items)
    assert not decoded.rejected, example
    assert len(decoded.items) == len(items), example


@pytest.mark.parametrize("example", _of("http-answer"), ids=str)
def test_http_answer_example(example: Example) -> None:
    answer = json.loads(example.body)
    assert set(answer) == {"accepted", "errors"}
    for error in answer["errors"]:
        assert set(error) - {"line"} == {"index", "reason", "detail"}  # line: NDJSON
        DeadLetterReason(error["reason"])
    if example.attrs["status"] == "400":
        assert answer["accepted"] == 0
        assert answer["errors"]


@pytest.mark.parametrize("example", _of("python"), ids=str)
def test_python_example_compiles(example: Example) -> None:
    compile(example.body, str(example), "exec")


# --- the analyst queries, on a real ClickHouse engine ----------------------------------

_RUN_QUERIES = """
import json, sys
from datetime import UTC, datetime
from engine.intake import Source, intake
from projections import rows
from projections.clickhouse import connect, query_read_only
from schemas import Event, Feedback, TagUpdate
from schemas.devices import DeviceUpdate
from engine.codecs import InputCodec

folder, payload = sys.argv[1], json.loads(sys.stdin.read())
client = connect("chdb://" + folder, "reach")
now = datetime.now(UTC)
kinds = {
    "event": (Event, rows.EVENTS, rows.event_row),
    "tag-update": (TagUpdate, rows.TAG_UPDATES, rows.tag_update_row),
    "feedback": (Feedback, rows.FEEDBACK, rows.feedback_row),
    "device-update": (DeviceUpdate, rows.DEVICES, rows.device_row),
}
letters = []
for offset, (kind, raw) in enumerate(payload["records"]):
    model, table, row_of = kinds[kind]
    result = intake(InputCodec(model, 1_000_000), raw.encode(),
                    Source("reach." + kind, 0, offset, None), now)
    origin = rows.Origin(0, offset)
    if result.valid:
        client.insert(table.name, [row_of(item, origin, now) for item in result.valid],
                      column_names=list(table.columns))
    letters += [rows.dead_letter_row(letter, origin) for letter in result.dead]
client.insert("dead_letters", letters, column_names=list(rows.DEAD_LETTERS.columns))
answers = []
for sql, parameters in payload["queries"]:
    columns, found = query_read_only(client, sql, parameters)
    answers.append({"columns": columns, "rows": len(found)})
print(json.dumps(answers))
"""


def test_sql_examples_run_on_the_projection_tables(tmp_path: Path) -> None:
    """Each query runs on tables holding the page's own examples (chDB, in a child
    process: the embedded engine allows one data path per process)."""
    records = [
        (example.kind.removeprefix("invalid-"), example.body)
        for example in _of(*MODELS, *(f"invalid-{kind}" for kind in MODELS))
    ]
    queries: list[tuple[str, dict[str, Any] | None]] = [
        (example.body, None) for example in _of("sql")
    ]
    for example in _of("query-request"):
        request = json.loads(example.body)
        queries.append((request["sql"], request.get("parameters")))
    completed = subprocess.run(
        [sys.executable, "-c", _RUN_QUERIES, str(tmp_path / "clickhouse")],
        input=json.dumps({"records": records, "queries": queries}),
        capture_output=True, text=True, cwd=ROOT, timeout=300, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    answers = json.loads(completed.stdout.strip().splitlines()[-1])
    assert len(answers) == len(queries)
    answered = [answer for answer in answers if answer["rows"]]
    # (chDB reports no column names for an empty result; a server does.)
    assert all(answer["columns"] for answer in answered)
    assert len(answered) >= len(queries) - 1, "the page's examples should show up"


# --- docs/configuration.md --------------------------------------------------------------


def _default_cell(name: str) -> str:
    value = Settings.model_fields[name].get_default(call_default_factory=True)
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if value is None:
        return "unset"
    if value == "":
        return "empty"
    return f"`{value}`"


def test_configuration_lists_every_setting_with_its_default() -> None:
    text = CONFIGURATION.read_text(encoding="utf-8")
    table = text[text.index("## Variables") : text.index("## Client-side variables")]
    rows = {
        match["name"]: (match["default"].strip(), match["meaning"].strip())
        for match in re.finditer(
            r"^\| `REACH_(?P<name>[A-Z0-9_]+)` \|(?P<default>[^|]*)\|(?P<meaning>.*)\|$",
            table,
            re.M,
        )
    }
    expected = {name.upper() for name in Settings.model_fields}
    assert set(rows) == expected, "docs/configuration.md must list every Settings field"
    for name in Settings.model_fields:
        default, meaning = rows[name.upper()]
        assert default == _default_cell(name), f"REACH_{name.upper()}"
        assert len(meaning) > 20, f"REACH_{name.upper()} needs a meaning"


def test_documented_variables_exist() -> None:
    """Every REACH_ variable named in the docs and deploy files is a real setting."""
    known = {f"REACH_{name.upper()}" for name in Settings.model_fields}
    known |= {"REACH_API_KEY", "REACH_WORKERS"}  # the CLI's key; the compose replica count
    files = [CONTRACTS, CONFIGURATION, *sorted(DEPLOY.glob("*")), *sorted(DEPLOY.glob(".*"))]
    for path in files:
        if path.is_file():
            named = set(re.findall(r"\bREACH_[A-Z0-9_]*[A-Z0-9]\b", path.read_text("utf-8")))
            assert named <= known, (path.name, named - known)


# --- deploy/ ---------------------------------------------------------------------------


def test_compose_file_parses() -> None:
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed")
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text(encoding="utf-8"))
    services = compose["services"]
    assert {"kafka", "clickhouse", "worker"} <= set(services)
    environment = services["worker"]["environment"]
    assert environment["REACH_HTTP_HOST"] == "0.0.0.0"
    assert environment["REACH_CLICKHOUSE_DSN"].startswith("http://")
    for name in environment:
        assert name.removeprefix("REACH_").lower() in Settings.model_fields, name


def test_compose_workers_share_a_clickhouse_server_and_need_keys() -> None:
    """Checked on the text, so that it runs without PyYAML too."""
    text = (DEPLOY / "docker-compose.yml").read_text(encoding="utf-8")
    assert re.search(r"^\s+REACH_CLICKHOUSE_DSN: http://", text, re.M)
    assert re.search(r"^\s+REACH_BROKER_URL: kafka://kafka:9092$", text, re.M)
    assert re.search(r"^\s+REACH_HTTP_HOST: 0\.0\.0\.0$", text, re.M)
    assert re.search(r"^\s+REACH_API_KEYS: \$\{REACH_API_KEYS:\?", text, re.M)
    assert "KAFKA_PROCESS_ROLES: broker,controller" in text
    assert "\t" not in text


def test_dockerfile_installs_from_the_lock_and_runs_reach_up() -> None:
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim$", text, re.M)
    assert "--constraint requirements.lock" in text
    assert text.index("requirements.lock") < text.index("pip install --no-deps .")
    assert 'ENTRYPOINT ["reach"]' in text
    assert 'CMD ["up"]' in text
    packages = re.findall(r"^COPY (\w+) \./\1$", text, re.M)
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    included = re.search(r"include = \[(.*?)\]", pyproject)
    assert included is not None
    for pattern in re.findall(r'"(\w+)\*"', included[1]):
        if (ROOT / pattern).is_dir():
            assert pattern in packages, f"the image must copy package {pattern}"
