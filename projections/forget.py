"""A forgotten user's rows leave every ClickHouse table that has a ``user_id``."""

from __future__ import annotations

from clickhouse_connect.driver.client import Client

USER_TABLES = (
    "events",
    "tag_updates",
    "feedback",
    "devices",
    "segment_memberships",
    "send_commands",
    "journey_activity",
    "user_profiles",
    "user_profile_changes",
)
"""The projection tables with a user per row (the views over them follow)."""

# A lightweight delete: the rows are gone from every query at once, and from the
# disk at the next merge.
DELETE_USER = "DELETE FROM {table:Identifier} WHERE user_id = {user_id:String}"


def delete_user_rows(client: Client, user_id: str) -> None:
    for table in USER_TABLES:
        client.command(DELETE_USER, parameters={"table": table, "user_id": user_id})
