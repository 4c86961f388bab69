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

    @property
    def change_id(self) -> str:
        """Row identity: a replay produces the same change with the same id."""
        return content_id("membership", self.segment_id, self.user_id, self.change, self.at)
