"""JSON Schemas of the input contracts, for producers written in other languages.

The pydantic models stay the source of truth; this module derives draft 2020-12
schemas from them with ``model_json_schema(mode="validation")`` and then states what
the models check in Python code and pydantic cannot express on its own:

- timestamps are ISO 8601 text *or* epoch milliseconds (a JSON number);
- versions must read ``w[.x[.y[.z]]]`` and price amounts must be decimal numbers;
- a tag update's values must fit its ``op``, and ``unset`` also takes a list of names.

Two differences remain: the schema takes only the common extended ISO 8601 forms and
plain decimal amounts (the models also take a few rarer spellings), and a pattern
cannot tell that a well-formed date such as 2024-02-30 does not exist. Regenerate the
committed copies with ``reach schemas docs/schemas``; a unit test keeps them current.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from schemas.devices import DeviceUpdate
from schemas.events import Event
from schemas.feedback import Feedback
from schemas.tags import TagOp, TagUpdate
from schemas.values import _VERSION

DIALECT = "https://json-schema.org/draft/2020-12/schema"
ID_PREFIX = "urn:reachstream:schema:"

# Epoch milliseconds the engine accepts: years 1900 to 2299, ClickHouse's DateTime64
# range (1900-01-01T00:00:00Z up to, not including, 2300-01-01T00:00:00Z).
EPOCH_MS_START = -2_208_988_800_000
EPOCH_MS_END = 10_413_792_000_000
# Extended ISO 8601: a date, optionally a time (minutes at least) and a UTC offset.
ISO_8601 = (
    r"^(19|2[0-2])\d{2}-\d{2}-\d{2}"
    r"([Tt ]\d{2}:\d{2}(:\d{2}([.,]\d+)?)?([Zz]|[+-]\d{2}:?\d{2})?)?$"
)
DECIMAL = r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$"

FILES: dict[str, type[BaseModel]] = {
    "event.schema.json": Event,
    "tag-update.schema.json": TagUpdate,
    "feedback.schema.json": Feedback,
    "device-update.schema.json": DeviceUpdate,
}

_TIMESTAMP_NOTE = "ISO 8601 text (read as UTC when it has no offset) or epoch milliseconds."
_DERIVED_NOTE = (
    "Optional. When absent it is derived from the content (blake2b of its canonical "
    "JSON), so a record sent twice is counted once."
)
_DESCRIPTIONS: dict[type[BaseModel], dict[str, str]] = {
    Event: {
        "user_id": "The user who did it. Also the Kafka record key.",
        "name": "What the user did, e.g. purchase or app_open.",
        "timestamp": "When it happened. " + _TIMESTAMP_NOTE,
        "attributes": "Details of the event: name -> scalar, list of scalars or typed value.",
        "event_id": _DERIVED_NOTE + " Derived from user_id, name, timestamp and attributes.",
    },
    TagUpdate: {
        "user_id": "The user whose tags change. Also the Kafka record key.",
        "op": "How the tags change; set when absent.",
        "tags": "Tag name -> value. For unset, the values are ignored (null) or tags "
        "is a list of tag names.",
        "timestamp": "When the change happened. " + _TIMESTAMP_NOTE,
        "update_id": _DERIVED_NOTE + " Derived from user_id, op, timestamp and tags.",
    },
    Feedback: {
        "command_id": "The send command this feedback is about.",
        "user_id": "The recipient. Also the Kafka record key.",
        "status": "What happened to the message.",
        "timestamp": "When it happened. " + _TIMESTAMP_NOTE,
        "channel": "Delivery channel, e.g. push, email or sms.",
        "reason": "Free text, e.g. a provider's bounce or failure reason.",
        "feedback_id": _DERIVED_NOTE + " Derived from command_id, status and timestamp.",
    },
    DeviceUpdate: {
        "user_id": "The user whose devices change. Also the Kafka record key.",
        "op": "register (the default), unregister, opt_out or opt_in.",
        "device": "For register (or unregister): the device or address, by kind.",
        "device_id": "For unregister: the device's id (as send commands and feedback "
        "name it); or give the device.",
        "channel": "For opt_out and opt_in: the channel.",
        "reason": "Free text: why, e.g. 'provider: Unregistered'.",
        "timestamp": "When the change happened. " + _TIMESTAMP_NOTE,
        "update_id": _DERIVED_NOTE
        + " Derived from user_id, op, timestamp, device, device_id and channel.",
    },
}
_MODEL_DESCRIPTIONS: dict[type[BaseModel], str] = {
    Feedback: "What happened to a message after it was sent: one status change.",
    DeviceUpdate: "One change to a user's devices and addresses, or to their consent "
    "on a channel (docs/devices.md).",
}


class _InputSchemas(GenerateJsonSchema):
    """Pydantic's generator, with timestamps as the engine reads them."""

    def datetime_schema(self, schema: core_schema.DatetimeSchema) -> JsonSchemaValue:
        return {
            "anyOf": [
                {"type": "string", "pattern": ISO_8601},
                {
                    "type": "number",
                    "minimum": EPOCH_MS_START,
                    "exclusiveMaximum": EPOCH_MS_END,
                },
            ]
        }


def _scalar_or_list(types: list[str]) -> dict[str, Any]:
    return {"anyOf": [{"type": types}, {"type": "array", "items": {"type": types}}]}


def _tag_rules(schema: dict[str, Any]) -> None:
    """Values must fit the operation; ``unset`` takes a list of names too."""
    properties = schema["properties"]
    by_name = properties["tags"]
    names = {
        "type": "array",
        "minItems": 1,
        "items": {"type": "string", **by_name["propertyNames"]},
    }
    properties["tags"] = {
        "description": by_name.pop("description"),
        "anyOf": [by_name, names],
    }

    def when(ops: list[TagOp]) -> dict[str, Any]:
        return {"required": ["op"], "properties": {"op": {"enum": [op.value for op in ops]}}}

    def values(rule: dict[str, Any]) -> dict[str, Any]:
        return {"properties": {"tags": {"type": "object", "additionalProperties": rule}}}

    schema["allOf"] = [
        # Every op but unset (also the default, set) needs an object of non-null values.
        {"if": when([TagOp.UNSET]), "else": values({"not": {"type": "null"}})},
        {"if": when([TagOp.INCREMENT]), "then": values({"type": "number"})},
        {
            "if": when([TagOp.APPEND, TagOp.REMOVE]),
            "then": values(_scalar_or_list(["string", "number"])),
        },
    ]


def json_schema(model: type[BaseModel], file_name: str) -> dict[str, Any]:
    """The JSON Schema of one input contract."""
    schema = copy.deepcopy(
        model.model_json_schema(mode="validation", schema_generator=_InputSchemas)
    )
    definitions = schema.get("$defs", {})
    if "VersionValue" in definitions:
        definitions["VersionValue"]["properties"]["value"]["pattern"] = _VERSION.pattern
    if "PriceValue" in definitions:
        amount = definitions["PriceValue"]["properties"]["amount"]
        amount["anyOf"] = [{"type": "number"}, {"type": "string", "pattern": DECIMAL}]
        amount["description"] = "A decimal number; as text it keeps every digit."
    for name, text in _DESCRIPTIONS[model].items():
        schema["properties"][name]["description"] = text
    if model in _MODEL_DESCRIPTIONS:
        schema["description"] = _MODEL_DESCRIPTIONS[model]
    if model is TagUpdate:
        _tag_rules(schema)
    return {
        "$schema": DIALECT,
        "$id": ID_PREFIX + file_name.removesuffix(".schema.json"),
        "$comment": "Generated by `reach schemas` from the pydantic models; do not edit.",
        **schema,
    }


def render(schema: dict[str, Any]) -> str:
    """Stable text: sorted keys, 2-space indent, a trailing newline."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def generate() -> dict[str, str]:
    """File name -> file content, for every input contract."""
    return {name: render(json_schema(model, name)) for name, model in FILES.items()}


def write_all(folder: Path) -> list[Path]:
    """Write the schemas into ``folder`` (created if needed); returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in generate().items():
        path = folder / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
