"""Behavioural events: something a user did, at a time."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field

from schemas.identity import content_id
from schemas.values import CONTRACT, Name, Timestamp, UserId, Value


def _derive_event_id(data: dict[str, Any]) -> str:
    return content_id(
        "event", data["user_id"], data["name"], data["timestamp"], data.get("attributes", {})
    )


class Event(BaseModel):
    """One behavioural event.

    ``event_id`` is optional: when absent it is derived from the content, so that a
    producer that re-sends the same event does not count it twice.
    """

    model_config = CONTRACT

    user_id: UserId
    name: Name
    timestamp: Timestamp
    attributes: dict[Name, Value] = Field(default_factory=dict)
    # Declared last: the default factory reads the fields validated before it.
    event_id: Annotated[str, Field(min_length=1, max_length=128)] = Field(
        default_factory=_derive_event_id
    )
