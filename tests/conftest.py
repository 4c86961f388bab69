"""Fixtures shared by every tier. Integration fixtures start what they need themselves."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from streams.broker import EmbeddedBroker

# Systems started by the tests (``reach up`` in a child process inherits this) keep their
# topics in memory: durability is not what most tests are about, and memory is faster.
# The tests about durability ask for it; REACH_BROKER_STORAGE=durable in the environment
# runs the systems of every test on durable storage.
os.environ.setdefault("REACH_BROKER_STORAGE", "memory")


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    """A real embedded broker (tansu) on a free loopback port, for this test session."""
    with EmbeddedBroker() as running:
        yield running
