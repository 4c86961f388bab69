"""Fixtures shared by every tier. Integration fixtures start what they need themselves."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from streams.broker import EmbeddedBroker


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    """A real embedded broker (tansu) on a free loopback port, for this test session."""
    with EmbeddedBroker() as running:
        yield running
