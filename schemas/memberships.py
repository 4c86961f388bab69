"""Membership changes: a user entered or left a segment, at a time, under a version.

A record on the memberships topic is a JSON array of these, all of users of the
record's partition (the partition of the input that caused them).
"""

from __future__ import annotations

from enum import StrEnum

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
