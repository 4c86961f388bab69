"""A journey simulation in plain Python: a registry, users with tags and memberships,
and time that moves only when told. Each user's due timers fire at their instants,
as the runtime fires them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import yaml

from engine.journeys.catalog import Catalog
from engine.journeys.codec import decode, encode
from engine.journeys.logic import (
    AudienceRun,
    Facts,
    Input,
    JourneyResult,
    JourneyState,
    Stopped,
    Tick,
    next_due,
    step,
)
from engine.segments.logic import MembershipChange
from engine.time import from_ms, to_ms
from schemas.commands import JourneyEntryRequest
from schemas.definitions import Definitions, JourneyAction
from schemas.events import Event
from schemas.feedback import Feedback, FeedbackStatus
from schemas.journey_nodes import Channel, MessageNode
from schemas.journeys import JourneyDefinition
from schemas.presets import PresetDefinition
from schemas.segments import SegmentDefinition

T0 = datetime(2026, 12, 10, 8, 0, tzinfo=UTC)


def load_journeys(path: str) -> list[JourneyDefinition]:
    with open(path) as handle:
        return [JourneyDefinition.model_validate(item) for item in yaml.safe_load(handle)]


def load_presets(path: str = "examples/seed-presets.yaml") -> list[PresetDefinition]:
    with open(path) as handle:
        return [PresetDefinition.model_validate(item) for item in yaml.safe_load(handle)]


def segment(segment_id: str) -> SegmentDefinition:
    return SegmentDefinition.model_validate(
        {
            "id": segment_id,
            "name": segment_id,
            "condition": {"kind": "tag", "tag": "x", "type": "string", "op": "exists"},
        }
    )


MINIMAL_CONTENT: dict[Channel, dict[str, Any]] = {
    Channel.PUSH: {"title": "Hello", "body": "Hi {{tag.First Name|there}}"},
    Channel.WEB_PUSH: {"title": "Hello", "body": "Hi {{tag.First Name|there}}"},
    Channel.EMAIL: {"subject": "Hello", "text": "Hi {{user_id}}", "sender": "hi@example.com"},
    Channel.SMS: {"text": "Hi {{tag.First Name|there}}"},
    Channel.WHATSAPP: {"template": "hello", "language": "en"},
    Channel.IN_APP: {"payload": {"text": "Hello"}},
}


def preset(preset_id: str, channel: Channel | str = Channel.EMAIL) -> PresetDefinition:
    """A minimal preset of ``channel``."""
    content = MINIMAL_CONTENT[Channel(channel)]
    return PresetDefinition.model_validate(
        {"id": preset_id, "name": preset_id, "channel": channel, "content": content}
    )


ADDRESSES = {
    "Push Token": "push-token",
    "Web Push Token": "web-push-token",
    "Email": "user@example.com",
    "Phone": "+15550100",
}
"""Every simulated user has an address on every channel unless a test takes it away
(a message step records ``unreachable`` for a user without one)."""


@dataclass
class User:
    tags: dict[str, Any] = field(default_factory=dict)
    members: dict[str, int] = field(default_factory=dict)
    state: JourneyState | None = None


@dataclass
class Sim:
    now: datetime = T0
    registry: Definitions = field(default_factory=Definitions)
    users: dict[str, User] = field(default_factory=dict)
    commands: list[dict[str, Any]] = field(default_factory=list)
    activity: list[dict[str, Any]] = field(default_factory=list)
    tag_updates: list[dict[str, Any]] = field(default_factory=list)
    catalog: Catalog = field(default_factory=lambda: Catalog.build({}))

    # --- definitions ------------------------------------------------------------------

    def define(self, *journeys: JourneyDefinition | Mapping[str, Any]) -> None:
        for journey in journeys:
            definition = (
                journey
                if isinstance(journey, JourneyDefinition)
                else JourneyDefinition.model_validate(journey)
            )
            for segment_id in definition.segments:
                if segment_id not in self.registry.segments:
                    self.registry.fold(self.registry.prepare(segment(segment_id), self.now))
            for node in definition.nodes:
                if isinstance(node, MessageNode) and node.preset not in self.registry.presets:
                    made = preset(node.preset, node.channel)
                    self.registry.fold(self.registry.prepare_preset(made, self.now))
            self.registry.fold(self.registry.prepare_journey(definition, self.now))
        self._rebuild()

    def act(self, journey_id: str, action: str, name: str | None = None) -> None:
        event = self.registry.prepare_action(journey_id, JourneyAction(action), self.now, name)
        self.registry.fold(event)
        self._rebuild()
        if action == "stop":
            for user_id in list(self.users):
                self.apply(user_id, Stopped(journey_id))
        elif action == "resume":
            for user_id in list(self.users):
                self.apply(user_id, Tick())

    def _rebuild(self) -> None:
        self.catalog = Catalog.build(self.registry.journeys)

    # --- users ------------------------------------------------------------------------

    def user(self, user_id: str, *segments: str, **tags: Any) -> User:
        user = self.users.setdefault(user_id, User(dict(ADDRESSES)))
        user.members.update(dict.fromkeys(segments, 1))
        user.tags.update({name.replace("_", " "): value for name, value in tags.items()})
        return user

    def leave(self, user_id: str, segment_id: str) -> None:
        user = self.users[user_id]
        version = user.members.pop(segment_id)
        change = MembershipChange(segment_id, "exited", self.now, version)
        self.apply(user_id, Tick(), changes=(change,))

    def apply(
        self, user_id: str, input: Input, changes: Iterable[MembershipChange] = ()
    ) -> JourneyResult:
        user = self.users.setdefault(user_id, User(dict(ADDRESSES)))
        facts = Facts(user_id, user.tags, user.members)
        result = step(self.catalog, user.state, facts, input, to_ms(self.now), tuple(changes))
        # Through the stored form, as the worker keeps it.
        user.state = decode(orjson.loads(orjson.dumps(encode(result.state))))
        self.commands.extend(result.commands)
        self.activity.extend(result.activity)
        self.tag_updates.extend(result.tag_updates)
        return result

    # --- inputs -----------------------------------------------------------------------

    def run(self, journey_id: str, run: str = "now", due: datetime | None = None) -> None:
        """An audience run reaches every user."""
        for user_id in list(self.users):
            self.apply(user_id, AudienceRun(journey_id, run, to_ms(due) if due else None))

    def event(self, user_id: str, name: str, **attributes: Any) -> JourneyResult:
        event = Event(user_id=user_id, name=name, timestamp=self.now, attributes=attributes)
        return self.apply(user_id, event)

    def enter(self, journey_id: str, user_id: str, **properties: Any) -> JourneyResult:
        request = JourneyEntryRequest(
            journey_id=journey_id, user_id=user_id, at=self.now, properties=properties
        )
        return self.apply(user_id, request)

    def feedback(self, command: Mapping[str, Any], status: str = "opened") -> JourneyResult:
        feedback = Feedback(
            command_id=command["command_id"],
            user_id=command["user_id"],
            status=FeedbackStatus(status),
            timestamp=self.now,
            channel=command["channel"],
        )
        return self.apply(command["user_id"], feedback)

    def advance(self, delta: timedelta) -> None:
        """Move time forward, firing every due timer at its own instant."""
        end = self.now + delta
        while True:
            dues = [
                (due, user_id)
                for user_id, user in self.users.items()
                if (due := self._due(user)) is not None and due <= to_ms(end)
            ]
            if not dues:
                break
            due, user_id = min(dues)
            self.now = max(self.now, from_ms(due))
            self.apply(user_id, Tick())
        self.now = end

    def _due(self, user: User) -> int | None:
        return next_due(self.catalog, user.state)

    # --- reading ----------------------------------------------------------------------

    def sent(self, user_id: str | None = None) -> list[str]:
        """``step`` of each command, in order (of one user, or all)."""
        return [c["step"] for c in self.commands if user_id is None or c["user_id"] == user_id]

    def counts(self, journey_id: str | None = None) -> Counter[tuple[str, str]]:
        return Counter(
            (row["step"], row["activity"])
            for row in self.activity
            if journey_id is None or row["journey_id"] == journey_id
        )

    def rows(self, user_id: str, activity: str) -> list[dict[str, Any]]:
        return [r for r in self.activity if r["user_id"] == user_id and r["activity"] == activity]
