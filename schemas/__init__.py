"""Contracts of reachstream: frozen pydantic v2 models, free of any stream framework."""

from schemas.dead_letters import DeadLetter, DeadLetterReason
from schemas.events import Event
from schemas.feedback import Feedback, FeedbackStatus
from schemas.tags import TagOp, TagUpdate
from schemas.values import DateValue, PriceValue, Value, VersionValue

__all__ = [
    "DateValue",
    "DeadLetter",
    "DeadLetterReason",
    "Event",
    "Feedback",
    "FeedbackStatus",
    "PriceValue",
    "TagOp",
    "TagUpdate",
    "Value",
    "VersionValue",
]
