"""Tag updates: changes to a user's attributes."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field, model_validator

from schemas.identity import content_id
from schemas.values import CONTRACT, Name, Timestamp, UserId, Value


class TagOp(StrEnum):
    SET = "set"
    UNSET = "unset"
    INCREMENT = "increment"
    APPEND = "append"
    REMOVE = "remove"


def _derive_update_id(data: dict[str, Any]) -> str:
    return content_id("tags", data["user_id"], data["op"], data["timestamp"], data.get("tags", {}))


class TagUpdate(BaseModel):
    """One operation applied to one or more tags of a user.

    - ``set``: each tag takes the given value.
    - ``unset``: the tags are removed; ``tags`` may be a list of names.
    - ``increment``: numeric tags grow by the given (possibly negative) number.
    - ``append`` / ``remove``: list tags gain or lose the given value or values.
    """

    model_config = CONTRACT

    user_id: UserId
    op: TagOp = TagOp.SET
    tags: dict[Name, Value | None] = Field(min_length=1)
    timestamp: Timestamp
    update_id: str = Field(default_factory=_derive_update_id, min_length=1, max_length=128)

    @model_validator(mode="before")
    @classmethod
    def _names_for_unset(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("op") == "unset":
            names = data.get("tags")
            # Only names can become keys; anything else is left for validation to refuse.
            if isinstance(names, list) and all(isinstance(name, str) for name in names):
                return {**data, "tags": dict.fromkeys(names)}
        return data

    @model_validator(mode="after")
    def _values_fit_op(self) -> TagUpdate:
        for name, value in self.tags.items():
            problem = _value_problem(self.op, value)
            if problem:
                raise ValueError(f"tag {name!r}: {problem}")
        return self


def _value_problem(op: TagOp, value: Value | None) -> str | None:
    if op is TagOp.UNSET:
        return None
    if value is None:
        return f"'{op}' needs a value"
    if op is TagOp.INCREMENT and (isinstance(value, bool) or not isinstance(value, int | float)):
        return "'increment' needs a number"
    if op in (TagOp.APPEND, TagOp.REMOVE):
        items = value if isinstance(value, list) else [value]
        if not all(
            isinstance(item, str | int | float) and not isinstance(item, bool) for item in items
        ):
            return f"'{op}' needs a string or number, or a list of them"
    return None
