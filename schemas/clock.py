"""Clock ticks: in simulation, the engine's time moves only when a tick says so.

A tick is written to every partition of the clock topic, so each worker sees it; the
workers then fire every timer due up to that instant, in order.

A tick may carry a barrier, ``after``: for each input topic, the end offset of the
tick's partition when the tick was written. The engine applies the tick to that
partition only once it has applied every input record before those offsets, so a tick
never overtakes an input written before it. Ticks without ``after`` (written by any
Kafka client as ``{"now": ...}``) wait for nothing.

Once a worker has applied a tick to a partition and its outputs are acknowledged, it
writes a ``TickApplied`` record (keyed ``role:partition``) to the compacted
clock-applied topic, which is how a driver learns that a tick has been applied.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints, TypeAdapter

from schemas.values import CONTRACT, Timestamp

TopicName = Annotated[str, StringConstraints(min_length=1, max_length=249)]
MAX_BARRIER_TOPICS = 16


class Tick(BaseModel):
    model_config = CONTRACT

    now: Timestamp
    after: dict[TopicName, Annotated[int, Field(ge=0)]] = Field(
        default_factory=dict, max_length=MAX_BARRIER_TOPICS
    )
    """Input topic -> its end offset in this partition when the tick was written."""


class TickApplied(BaseModel):
    model_config = CONTRACT

    role: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    partition: Annotated[int, Field(ge=0)]
    now: Timestamp

    @property
    def key(self) -> str:
        return f"{self.role}:{self.partition}"


TICK: TypeAdapter[Tick] = TypeAdapter(Tick)
TICK_APPLIED: TypeAdapter[TickApplied] = TypeAdapter(TickApplied)
