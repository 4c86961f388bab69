"""The published JSON Schemas: current, and in agreement with the pydantic models.

``jsonschema`` is not a dependency, so the committed schemas are checked with the
small draft 2020-12 validator below (the keywords the generated schemas use; an
unknown keyword fails the test instead of being ignored). Every sample is judged
by both the schema and the model, and both must give the expected verdict.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from schemas import Event, Feedback, TagUpdate
from schemas.json_schema import FILES, generate, write_all

DOCS_SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"

_ANNOTATIONS = {
    "$comment", "$defs", "$id", "$schema", "default", "description", "discriminator",
    "title",
}  # fmt: skip


class _Validator:
    """Enough of JSON Schema draft 2020-12 for the generated schemas."""

    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root

    def valid(self, instance: Any) -> bool:
        return self._check(self.root, instance)

    def _resolve(self, ref: str) -> dict[str, Any]:
        assert ref.startswith("#/"), ref
        node: Any = self.root
        for part in ref[2:].split("/"):
            node = node[part]
        return dict(node)

    @staticmethod
    def _type_ok(name: str, value: Any) -> bool:
        if name == "null":
            return value is None
        if name == "boolean":
            return isinstance(value, bool)
        if name == "integer":
            return isinstance(value, int) and not isinstance(value, bool)
        if name == "number":
            return isinstance(value, int | float) and not isinstance(value, bool)
        if name == "string":
            return isinstance(value, str)
        if name == "array":
            return isinstance(value, list)
        if name == "object":
            return isinstance(value, dict)
        raise AssertionError(f"unknown type {name}")

    def _check(self, schema: dict[str, Any] | bool, value: Any) -> bool:
        if isinstance(schema, bool):
            return schema
        for keyword, rule in schema.items():
            if keyword in _ANNOTATIONS or keyword in ("then", "else"):
                continue
            if keyword == "$ref":
                ok = self._check(self._resolve(rule), value)
            elif keyword == "type":
                names = rule if isinstance(rule, list) else [rule]
                ok = any(self._type_ok(name, value) for name in names)
            elif keyword == "const":
                ok = value == rule and type(value) is type(rule)
            elif keyword == "enum":
                ok = any(value == item and type(value) is type(item) for item in rule)
            elif keyword == "anyOf":
                ok = any(self._check(option, value) for option in rule)
            elif keyword == "oneOf":
                ok = sum(self._check(option, value) for option in rule) == 1
            elif keyword == "allOf":
                ok = all(self._check(option, value) for option in rule)
            elif keyword == "not":
                ok = not self._check(rule, value)
            elif keyword == "if":
                branch = "then" if self._check(rule, value) else "else"
                ok = self._check(schema.get(branch, True), value)
            elif not self._applies(keyword, value):
                continue
            elif keyword == "properties":
                ok = all(self._check(rule[k], v) for k, v in value.items() if k in rule)
            elif keyword == "additionalProperties":
                known = schema.get("properties", {})
                ok = all(self._check(rule, v) for k, v in value.items() if k not in known)
            elif keyword == "propertyNames":
                ok = all(self._check(rule, name) for name in value)
            elif keyword == "required":
                ok = all(name in value for name in rule)
            elif keyword == "items":
                ok = all(self._check(rule, item) for item in value)
            elif keyword in ("minItems", "minLength", "minProperties"):
                ok = len(value) >= rule
            elif keyword == "maxLength":
                ok = len(value) <= rule
            elif keyword == "pattern":
                ok = re.search(rule, value) is not None
            elif keyword == "minimum":
                ok = value >= rule
            elif keyword == "maximum":
                ok = value <= rule
            elif keyword == "exclusiveMaximum":
                ok = value < rule
            else:
                raise AssertionError(f"the test validator does not know {keyword!r}")
            if not ok:
                return False
        return True

    @staticmethod
    def _applies(keyword: str, value: Any) -> bool:
        """Assertions constrain only instances of their own JSON type."""
        if keyword in ("properties", "additionalProperties", "propertyNames", "required",
                       "minProperties"):  # fmt: skip
            return isinstance(value, dict)
        if keyword in ("items", "minItems"):
            return isinstance(value, list)
        if keyword in ("minLength", "maxLength", "pattern"):
            return isinstance(value, str)
        if keyword in ("minimum", "maximum", "exclusiveMaximum"):
            return isinstance(value, int | float) and not isinstance(value, bool)
        return True


def _committed(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((DOCS_SCHEMAS / name).read_text(encoding="utf-8"))
    return loaded


def _model_accepts(model: type[BaseModel], document: Any) -> bool:
    try:
        model.model_validate_json(json.dumps(document))
    except ValidationError:
        return False
    return True


# --- the committed files ---------------------------------------------------------


def test_committed_schemas_are_current() -> None:
    fresh = generate()
    committed = {path.name for path in DOCS_SCHEMAS.glob("*.json")}
    assert committed == set(fresh), "run `reach schemas docs/schemas`"
    for name, text in fresh.items():
        assert (DOCS_SCHEMAS / name).read_text(encoding="utf-8") == text, (
            f"{name} is stale: run `reach schemas docs/schemas`"
        )


def test_write_all_creates_the_folder_and_returns_the_paths(tmp_path: Path) -> None:
    folder = tmp_path / "nested" / "schemas"
    paths = write_all(folder)
    assert [path.name for path in paths] == list(FILES)
    for path in paths:
        text = path.read_text(encoding="utf-8")
        assert text.endswith("}\n")
        schema = json.loads(text)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["$id"].startswith("urn:reachstream:schema:")
        assert schema["title"] == FILES[path.name].__name__
        assert text == json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def test_schemas_package_does_not_need_a_stream_framework() -> None:
    folder = Path(__file__).resolve().parents[2] / "schemas"
    for source in folder.glob("*.py"):
        text = source.read_text(encoding="utf-8")
        assert not re.search(r"^\s*(import|from)\s+(faust|mode|aiokafka)\b", text, re.M), source


# --- schema and model agree --------------------------------------------------------

T = "2024-05-01T10:00:00Z"

EVENT_CASES: list[tuple[Any, bool]] = [
    ({"user_id": "u1", "name": "app_open", "timestamp": T}, True),
    ({"user_id": "u1", "name": "app_open", "timestamp": 1714557600000}, True),
    ({"user_id": "u1", "name": "app_open", "timestamp": 1714557600000.5}, True),
    ({"user_id": "u1", "name": "app_open", "timestamp": "2024-05-01"}, True),
    ({"user_id": "u1", "name": "app_open", "timestamp": "2024-05-01T10:00"}, True),
    ({"user_id": "u1", "name": "app_open", "timestamp": "2024-05-01 10:00:00"}, True),
    ({"user_id": "u1", "name": "app_open", "timestamp": "2024-05-01T12:00:00+02:00"}, True),
    ({"user_id": "u1", "name": "app_open", "timestamp": "2024-05-01T10:00:00.250Z"}, True),
    ({"user_id": "u1", "name": "app_open", "timestamp": "2024-05-01t10:00:00,5z"}, True),
    ({"user_id": "u1", "name": "app_open", "timestamp": "2024-05-01T10:00-0130"}, True),
    ({"user_id": "u1", "name": "app_open", "timestamp": T, "event_id": "mine-1"}, True),
    (
        {
            "user_id": "u1",
            "name": "purchase",
            "timestamp": T,
            "attributes": {
                "sku": "A-1",
                "quantity": 2,
                "gift": False,
                "ratio": 0.5,
                "labels": ["x", 1, 2.5, True],
                "total": {"type": "price", "amount": "19.90", "currency": "EUR"},
                "fee": {"type": "price", "amount": 1.5, "currency": "USD"},
                "delivered_by": {"type": "date", "value": "2024-05-03"},
                "ordered_at": {"type": "date", "value": 1714557600000},
                "app": {"type": "version", "value": "4.12.1"},
            },
        },
        True,
    ),
    ({"user_id": "u1", "name": "app_open"}, False),
    ({"name": "app_open", "timestamp": T}, False),
    ({"user_id": "", "name": "app_open", "timestamp": T}, False),
    ({"user_id": "u" * 257, "name": "app_open", "timestamp": T}, False),
    ({"user_id": 42, "name": "app_open", "timestamp": T}, False),
    ({"user_id": "u1", "name": "n" * 129, "timestamp": T}, False),
    ({"user_id": "u1", "name": "app_open", "timestamp": T, "colour": "red"}, False),
    ({"user_id": "u1", "name": "app_open", "timestamp": "yesterday"}, False),
    ({"user_id": "u1", "name": "app_open", "timestamp": True}, False),
    ({"user_id": "u1", "name": "app_open", "timestamp": -1}, True),
    ({"user_id": "u1", "name": "app_open", "timestamp": -2208988800000}, True),
    ({"user_id": "u1", "name": "app_open", "timestamp": 10413791999999}, True),
    ({"user_id": "u1", "name": "app_open", "timestamp": -2208988800001}, False),
    ({"user_id": "u1", "name": "app_open", "timestamp": 10413792000000}, False),
    ({"user_id": "u1", "name": "app_open", "timestamp": "1899-12-31T23:59:59Z"}, False),
    ({"user_id": "u1", "name": "app_open", "timestamp": "2300-01-01T00:00:00Z"}, False),
    ({"user_id": "u1", "name": "app_open", "timestamp": "2024-05-01T10"}, False),
    ({"user_id": "u1", "name": "app_open", "timestamp": "2024-05-01T10:00:00+02"}, False),
    ({"user_id": "u1", "name": "app_open", "timestamp": " 2024-05-01T10:00:00Z"}, False),
    ({"user_id": "u1", "name": "app_open", "timestamp": T, "event_id": ""}, False),
    ({"user_id": "u1", "name": "app_open", "timestamp": T, "attributes": []}, False),
    ({"user_id": "u1", "name": "app_open", "timestamp": T, "attributes": {"a": None}}, False),
    ({"user_id": "u1", "name": "app_open", "timestamp": T, "attributes": {"a": {}}}, False),
    ({"user_id": "u1", "name": "app_open", "timestamp": T, "attributes": {"a": [[1]]}}, False),
    ({"user_id": "u1", "name": "x", "timestamp": T, "attributes": {"": 1}}, False),
    (
        {"user_id": "u1", "name": "x", "timestamp": T,
         "attributes": {"v": {"type": "version", "value": "1.2.3.4.5"}}},
        False,
    ),
    (
        {"user_id": "u1", "name": "x", "timestamp": T,
         "attributes": {"v": {"type": "version", "value": "v1"}}},
        False,
    ),
    (
        {"user_id": "u1", "name": "x", "timestamp": T,
         "attributes": {"p": {"type": "price", "amount": "cheap", "currency": "EUR"}}},
        False,
    ),
    (
        {"user_id": "u1", "name": "x", "timestamp": T,
         "attributes": {"p": {"type": "price", "amount": "1", "currency": "eur"}}},
        False,
    ),
    (
        {"user_id": "u1", "name": "x", "timestamp": T,
         "attributes": {"d": {"type": "date", "value": "soon"}}},
        False,
    ),
    (
        {"user_id": "u1", "name": "x", "timestamp": T,
         "attributes": {"c": {"type": "colour", "value": "red"}}},
        False,
    ),
    (
        {"user_id": "u1", "name": "x", "timestamp": T,
         "attributes": {"v": {"type": "version", "value": "1", "extra": 1}}},
        False,
    ),
    ([{"user_id": "u1", "name": "app_open", "timestamp": T}], False),
    ("app_open", False),
]  # fmt: skip

TAG_CASES: list[tuple[Any, bool]] = [
    ({"user_id": "u1", "tags": {"plan": "pro"}, "timestamp": T}, True),
    ({"user_id": "u1", "op": "set", "tags": {"plan": "pro", "score": 1.5}, "timestamp": T}, True),
    (
        {"user_id": "u1", "op": "set", "timestamp": T,
         "tags": {"app": {"type": "version", "value": "4.1"}, "langs": ["en", "de"]}},
        True,
    ),
    ({"user_id": "u1", "op": "unset", "tags": ["plan", "score"], "timestamp": T}, True),
    ({"user_id": "u1", "op": "unset", "tags": {"plan": None}, "timestamp": T}, True),
    ({"user_id": "u1", "op": "unset", "tags": {"plan": "anything"}, "timestamp": T}, True),
    ({"user_id": "u1", "op": "increment", "tags": {"visits": 1}, "timestamp": T}, True),
    ({"user_id": "u1", "op": "increment", "tags": {"credit": -2.5}, "timestamp": T}, True),
    ({"user_id": "u1", "op": "append", "tags": {"topics": "jazz"}, "timestamp": T}, True),
    ({"user_id": "u1", "op": "append", "tags": {"seen": [1, 2, "x"]}, "timestamp": T}, True),
    ({"user_id": "u1", "op": "append", "tags": {"flags": True}, "timestamp": T}, False),
    ({"user_id": "u1", "op": "remove", "tags": {"topics": ["jazz"]}, "timestamp": T}, True),
    ({"user_id": "u1", "op": "remove", "tags": {"n": 3}, "timestamp": 0}, True),
    ({"user_id": "u1", "tags": {}, "timestamp": T}, False),
    ({"user_id": "u1", "tags": {"plan": None}, "timestamp": T}, False),
    ({"user_id": "u1", "op": "set", "tags": {"plan": None}, "timestamp": T}, False),
    ({"user_id": "u1", "op": "set", "tags": ["plan"], "timestamp": T}, False),
    ({"user_id": "u1", "tags": ["plan"], "timestamp": T}, False),
    ({"user_id": "u1", "op": "toggle", "tags": {"plan": "pro"}, "timestamp": T}, False),
    ({"user_id": "u1", "op": "unset", "tags": [], "timestamp": T}, False),
    ({"user_id": "u1", "op": "unset", "tags": [""], "timestamp": T}, False),
    ({"user_id": "u1", "op": "increment", "tags": {"visits": "1"}, "timestamp": T}, False),
    ({"user_id": "u1", "op": "increment", "tags": {"visits": True}, "timestamp": T}, False),
    ({"user_id": "u1", "op": "increment", "tags": {"visits": [1]}, "timestamp": T}, False),
    ({"user_id": "u1", "op": "increment", "tags": {"visits": None}, "timestamp": T}, False),
    (
        {"user_id": "u1", "op": "append", "timestamp": T,
         "tags": {"v": {"type": "version", "value": "1"}}},
        False,
    ),
    ({"user_id": "u1", "op": "remove", "tags": {"topics": None}, "timestamp": T}, False),
    ({"user_id": "u1", "tags": {"plan": "pro"}}, False),
    ({"user_id": "u1", "tags": {"plan": "pro"}, "timestamp": T, "update_id": ""}, False),
    ({"user_id": "u1", "tags": {"plan": "pro"}, "timestamp": T, "source": "crm"}, False),
]  # fmt: skip

FEEDBACK_CASES: list[tuple[Any, bool]] = [
    ({"command_id": "c1", "user_id": "u1", "status": "delivered", "timestamp": T}, True),
    (
        {"command_id": "c1", "user_id": "u1", "status": "bounced", "timestamp": 1714557600000,
         "channel": "email", "reason": "mailbox full", "feedback_id": "f-1"},
        True,
    ),
    (
        {"command_id": "c1", "user_id": "u1", "status": "opened", "timestamp": T,
         "channel": None, "reason": None},
        True,
    ),
    ({"command_id": "c1", "user_id": "u1", "status": "read", "timestamp": T}, False),
    ({"command_id": "", "user_id": "u1", "status": "opened", "timestamp": T}, False),
    ({"user_id": "u1", "status": "opened", "timestamp": T}, False),
    (
        {"command_id": "c1", "user_id": "u1", "status": "opened", "timestamp": T,
         "channel": "c" * 65},
        False,
    ),
    (
        {"command_id": "c1", "user_id": "u1", "status": "opened", "timestamp": T,
         "campaign": "spring"},
        False,
    ),
    ({"command_id": "c1", "user_id": "u1", "status": "opened", "timestamp": "later"}, False),
]  # fmt: skip

CASES: list[tuple[str, type[BaseModel], Any, bool]] = [
    *(("event.schema.json", Event, doc, ok) for doc, ok in EVENT_CASES),
    *(("tag-update.schema.json", TagUpdate, doc, ok) for doc, ok in TAG_CASES),
    *(("feedback.schema.json", Feedback, doc, ok) for doc, ok in FEEDBACK_CASES),
]


@pytest.mark.parametrize(("file_name", "model", "document", "expected"), CASES)
def test_schema_and_model_agree(
    file_name: str, model: type[BaseModel], document: Any, expected: bool
) -> None:
    assert _model_accepts(model, document) is expected, "the model's verdict"
    assert _Validator(_committed(file_name)).valid(document) is expected, "the schema's verdict"


def test_every_sample_set_has_both_verdicts() -> None:
    for cases in (EVENT_CASES, TAG_CASES, FEEDBACK_CASES):
        assert {ok for _, ok in cases} == {True, False}


def test_with_jsonschema_when_installed() -> None:
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is not installed")
    schemas = {name: _committed(name) for name in FILES}
    for schema in schemas.values():
        jsonschema.Draft202012Validator.check_schema(schema)
    for file_name, _model, document, expected in CASES:
        validator = jsonschema.Draft202012Validator(schemas[file_name])
        assert validator.is_valid(document) is expected, (file_name, document)
