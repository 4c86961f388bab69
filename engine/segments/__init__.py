"""Real-time segments, the pure core: per-user state, condition evaluation, timers,
the index of what affects what, and ``step``, the one call the segment agent makes.
See docs/segments.md, "How membership is kept"."""

from engine.segments.counters import DEFAULT_HORIZON
from engine.segments.evaluate import evaluate
from engine.segments.index import SegmentIndex
from engine.segments.logic import (
    DevicesChanged,
    Input,
    JourneyFeedback,
    MembershipChange,
    StepResult,
    Tick,
    on_definitions_changed,
    step,
)
from engine.segments.state import UserState, apply_event, apply_feedback, apply_tag_update
from engine.segments.timing import next_change
from engine.segments.windows import horizon_problems, window_problem

__all__ = [
    "DEFAULT_HORIZON",
    "DevicesChanged",
    "Input",
    "JourneyFeedback",
    "MembershipChange",
    "SegmentIndex",
    "StepResult",
    "Tick",
    "UserState",
    "apply_event",
    "apply_feedback",
    "apply_tag_update",
    "evaluate",
    "horizon_problems",
    "next_change",
    "on_definitions_changed",
    "step",
    "window_problem",
]
