"""Membership changes: a user entered or left a segment, at a time, under a version.

A record on the memberships topic is a JSON array of these, all of users of the
record's partition (the partition of the input that caused them).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from schemas.identity import content_id
from schemas.segments import SegmentId
from schemas.values import CONTRACT, Timestamp, UserId


class Change(StrEnum):
    ENTERED = "entered"
    EXITED = "exited"


class MembershipChanged(BaseModel):
    """One record on the memberships topic, keyed by user id."""

    model_config = CONTRACT

    segment_id: SegmentId
    user_id: UserId
    change: Change
    at: Timestamp
    version: int = Field(ge=0, description="The segment definition's version.")
    cause: str = Field(
        default="",
        max_length=256,
        description=(
            "What made the change: the input (``e:`` event, ``t:`` tag update, ``f:``"
            " feedback id), a timer (``timer:`` its instant in ms), or a definition"
            " change (``d:``)."
        ),
    )

    values: list[Any] | None = Field(
        default=None,
        max_length=64,
        description=(
            "The value each leaf condition of the definition read at ``at``, in the"
            " definition's order: a count (event and message conditions), the tag's"
            " stored value or null, the last occurrence in ms or null, whether a member"
            " (segment references). ``reach explain`` puts them in words with the"
            " definition of ``version``. Absent for a segment deleted and in records"
            " of earlier versions. Not part of the change's identity."
        ),
    )
    source: str = Field(
        default="",
        max_length=8,
        description=(
            "The topic (its letter: ``e`` events, ``t`` tag updates, ``f`` feedback, ``a``"
            " API entries) of the input record that made the change; empty for timers and"
            " definition changes. Not part of the identity: a replay by another path reads"
            " other offsets."
        ),
    )
    offset: int | None = Field(
        default=None, description="That input record's offset in its partition."
    )

    @property
    def change_id(self) -> str:
        """Row identity, from the change's cause and never from when it was computed: a
        replay at any ``now`` produces the same id (changes written before causes were
        recorded keep their instant in its place)."""
        return membership_change_id(
            self.segment_id, self.user_id, self.change, self.cause or self.at
        )


def membership_change_id(segment_id: str, user_id: str, change: str, cause: object) -> str:
    return content_id("membership", segment_id, user_id, change, cause)
