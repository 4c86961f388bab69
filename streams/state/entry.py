"""What the table keeps per key, and how it is encoded in the changelog."""

from __future__ import annotations

import re
from typing import Any, NamedTuple, TypeAlias

import orjson

JSONValue: TypeAlias = Any
"""Anything orjson can encode: dicts with str keys, lists, str, int, float, bool, None."""


# A NamedTuple, not a dataclass: it is built on every write, and a tuple of untracked
# values drops out of the garbage collector's scans, which a table of 100k entries feels.
class Entry(NamedTuple):
    """A key's state and the input offset of the last record whose effect it includes."""

    value: JSONValue
    applied_offset: int

    def encode(self, epoch: int = 0) -> bytes:
        """The changelog record's value; ``epoch`` (when not 0) names the ownership epoch
        of the writer, last, where ``epoch_of`` finds it without decoding the rest."""
        # Same JSON as dumping {"value": ..., "applied_offset": ...}, but in a right-sized
        # bytes object: orjson's own result sits in an oversized allocation, and a flush
        # holding 100k of those spent ~3 µs a record in page faults.
        if epoch:
            return b'{"value":%b,"applied_offset":%d,"epoch":%d}' % (
                orjson.dumps(self.value),
                self.applied_offset,
                epoch,
            )
        return b'{"value":%b,"applied_offset":%d}' % (orjson.dumps(self.value), self.applied_offset)

    @classmethod
    def decode(cls, raw: bytes) -> Entry:
        fields = orjson.loads(raw)
        # tuple.__new__ skips the NamedTuple's Python-level __new__: a third of the cost.
        return tuple.__new__(cls, (fields["value"], fields["applied_offset"]))


_EPOCH = re.compile(rb',"epoch":(\d+)}$')


def epoch_of(raw: bytes | None) -> int | None:
    """The writer's epoch of an encoded entry; None for a tombstone (which has none),
    0 for an entry written without one."""
    if raw is None:
        return None
    found = _EPOCH.search(raw, max(0, len(raw) - 32))
    return int(found.group(1)) if found else 0
