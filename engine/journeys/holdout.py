"""The global holdout: a stable share of users kept out of every journey, so their
goals can be compared with those of the users the journeys reach (lift).

Whether a user is held out depends only on their id and the holdout's salt: the same
user is always in or always out, on every worker and after every restart; raising the
percentage keeps everyone held out before and adds more; a new salt draws a new
group."""

from __future__ import annotations

import hashlib
from typing import NamedTuple

BUCKETS = 10_000
"""A user's bucket is one of 10,000: percentages count in hundredths."""


class Holdout(NamedTuple):
    percent: float
    """Of all users, 0 to 100 (0: nobody is held out)."""
    salt: str = ""

    def holds(self, user: str) -> bool:
        """Whether ``user`` is held out of every journey."""
        if self.percent <= 0:
            return False
        return bucket(self.salt, user) < round(self.percent * BUCKETS / 100)


def bucket(salt: str, user: str) -> int:
    """0 .. BUCKETS - 1, stable per salt and user."""
    digest = hashlib.blake2b(f"holdout\x00{salt}\x00{user}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS
