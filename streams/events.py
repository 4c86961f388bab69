"""What the agents (``agents/``, ``projections/agents/``) share of Faust: a stream's
events with manual acknowledgement. The one module of ``streams`` that imports Faust;
nothing else here imports this one."""

from __future__ import annotations

from collections.abc import AsyncIterable
from typing import cast

import faust


def unacked_events(stream: faust.StreamT[bytes]) -> AsyncIterable[faust.EventT[bytes]]:
    """The stream's events with automatic acks off (Faust's StreamT type lacks
    ``noack``, which every concrete Stream has)."""
    manual: faust.StreamT[bytes] = cast(faust.Stream[bytes], stream).noack()
    return cast(AsyncIterable[faust.EventT[bytes]], manual.events())
