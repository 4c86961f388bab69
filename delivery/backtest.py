"""Delivery diverted for a back-test (``engine.backtest``): the simulator decides what
happens to each send command, with the settings' profiles and seed, and its feedback
comes out as the delivery worker would emit it (the same statuses, instants, reasons,
hence the same feedback ids). Nothing is sent anywhere.

Differences from a live delivery worker: presets are not rendered (a command whose
content would not render is taken as sent), rate limits do not wait, and a channel the
simulator does not cover (webhooks) is taken as delivered at once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from delivery.ledger import after_outcome
from delivery.simulator import Profile, decide
from engine.backtest import Simulate
from engine.processor import Record
from engine.time import from_ms, to_ms
from schemas.commands import SendCommand
from schemas.feedback import Feedback

MAX_REASON, MAX_CHANNEL = 1024, 64
"""As the delivery worker cuts a reason and a channel name."""


def simulated(profiles: Mapping[str, Profile], seed: int) -> Simulate:
    """The simulator's feedback for a command delivered at ``now`` (ms)."""

    def simulate(record: Record, now: int) -> Sequence[Feedback]:
        # The core made it: its fields are right; only a few are read here.
        command = SendCommand.model_construct(**record)
        profile = profiles.get(command.channel)
        if profile is None:
            pending: list[tuple[str, int, str | None]] = [("delivered", now, None)]
        else:
            result = decide(command, profile, seed)
            outcome = result.outcome
            entry = after_outcome(
                1,
                outcome.status,
                outcome.reason,
                to_ms(outcome.at) if outcome.at is not None else None,
                [(later.status, to_ms(later.at)) for later in result.later],
                command.user_id,
                command.channel,
                now,
            )
            pending = [(p.status.value, p.at, p.reason) for p in entry.pending]
        return [
            Feedback.model_validate(
                {
                    "command_id": command.command_id,
                    "user_id": command.user_id,
                    "status": status,
                    "timestamp": from_ms(at),
                    "channel": command.channel[:MAX_CHANNEL],
                    "reason": reason[:MAX_REASON] if reason else None,
                }
            )
            for status, at, reason in pending
        ]

    return simulate
