"""Message feedback: what happened to a send command after it left the engine."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from schemas.identity import content_id
from schemas.values import CONTRACT, Timestamp, UserId


class FeedbackStatus(StrEnum):
    DELIVERED = "delivered"
    OPENED = "opened"
    CLICKED = "clicked"
    BOUNCED = "bounced"
    FAILED = "failed"
    UNSUBSCRIBED = "unsubscribed"
    DISMISSED = "dismissed"
    """The user closed an in-app message without acting on it."""


def _derive_feedback_id(data: dict[str, Any]) -> str:
    return content_id("feedback", data["command_id"], data["status"], data["timestamp"])


class Feedback(BaseModel):
    model_config = CONTRACT

    command_id: str = Field(min_length=1, max_length=256)
    user_id: UserId
    status: FeedbackStatus
    timestamp: Timestamp
    channel: str | None = Field(default=None, max_length=64)
    reason: str | None = Field(default=None, max_length=1024)
    feedback_id: str = Field(default_factory=_derive_feedback_id, min_length=1, max_length=128)
