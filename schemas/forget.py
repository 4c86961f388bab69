"""Forgetting a user: the request the workers apply (``reach users forget``)."""

from __future__ import annotations

from pydantic import BaseModel

from schemas.values import CONTRACT, Timestamp, UserId

FORGET_HEADER = "reach.forget"
"""A record on the tags topic with this header is a ``ForgetUser``, not a tag update.
Its key is the user id and it goes to the user's partition, after their records."""


class ForgetUser(BaseModel):
    """Delete everything kept about ``user_id``: their state (tags, counts, segment
    memberships, journeys) and their rows in ClickHouse."""

    model_config = CONTRACT

    user_id: UserId
    requested_at: Timestamp
