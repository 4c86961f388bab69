"""Clock ticks: in simulation, the engine's time moves only when a tick says so.

A tick is written to every partition of the clock topic, so each worker sees it; the
workers then fire every timer due up to that instant, in order.
"""

from __future__ import annotations

from pydantic import BaseModel, TypeAdapter

from schemas.values import CONTRACT, Timestamp


class Tick(BaseModel):
    model_config = CONTRACT

    now: Timestamp


TICK: TypeAdapter[Tick] = TypeAdapter(Tick)
