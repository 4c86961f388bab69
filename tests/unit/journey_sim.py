"""A journey simulation: a registry, users with tags and memberships set by the test,
and time that moves only when told, on the testing harness (``engine.testing``). Each
user's due timers fire at their instants, as the runtime fires them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml

from engine.journeys.catalog import Catalog
from engine.journeys.holdout import Holdout
from engine.journeys.logic import AudienceRun, Input
from engine.processor import Outcome
from engine.testing import Harness
from engine.time import to_ms
from schemas.commands import JourneyEntryRequest
from schemas.definitions import Definitions
from schemas.events import Event
from schemas.feedback import Feedback, FeedbackStatus
from schemas.journey_nodes import Channel, MessageNode
from schemas.journeys import JourneyDefinition
from schemas.presets import PresetDefinition
from schemas.segments import SegmentDefinition
from schemas.tags import TagUpdate

T0 = datetime(2026, 12, 10, 8, 0, tzinfo=UTC)


def load_journeys(path: str) -> list[JourneyDefinition]:
    with open(path) as handle:
        return [JourneyDefinition.model_validate(item) for item in yaml.safe_load(handle)]


def load_presets(path: str = "examples/seed-presets.yaml") -> list[PresetDefinition]:
    with open(path) as handle:
        return [PresetDefinition.model_validate(item) for item in yaml.safe_load(handle)]


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
    """A simulated user's tags and memberships (a test may change them directly: they
    are the user's starting point before each input) and journey state (read only)."""

    tags: dict[str, Any] = field(default_factory=dict)
    members: dict[str, int] = field(default_factory=dict)
    state: dict[str, Any] | None = None


LEFT = "left "
"""A simulated segment holds while the user has no tag ``left <segment>``: ``leave``
sets it, and the segment's evaluation makes the exit."""


def segment(segment_id: str) -> SegmentDefinition:
    return SegmentDefinition.model_validate(
        {
            "id": segment_id,
            "name": segment_id,
            "condition": {
                "kind": "tag",
                "tag": LEFT + segment_id,
                "type": "string",
                "op": "not_exists",
            },
        }
    )


class Sim:
    """Journeys over users whose tags and memberships a test sets directly, on the
    testing harness (``engine.testing``): every input goes through the user processor.
    Audience runs start only when a test calls ``run``."""

    def __init__(self, now: datetime = T0, holdout: Holdout | None = None) -> None:
        self.engine = Harness(now=now, schedules=False, holdout=holdout)
        self.users: dict[str, User] = {}
        self._ids = 0

    @property
    def now(self) -> datetime:
        return self.engine.now

    @now.setter
    def now(self, moment: datetime) -> None:
        self.engine.now = moment

    @property
    def registry(self) -> Definitions:
        return self.engine.registry

    @property
    def catalog(self) -> Catalog:
        return self.engine.model.catalog

    @property
    def commands(self) -> list[dict[str, Any]]:
        return self.engine.commands

    @property
    def activity(self) -> list[dict[str, Any]]:
        return self.engine.activity

    @property
    def tag_updates(self) -> list[dict[str, Any]]:
        return self.engine.tag_updates

    # --- definitions ------------------------------------------------------------------

    def define(self, *journeys: JourneyDefinition | Mapping[str, Any]) -> None:
        """The journeys, with a segment and a preset for each one they name (taken as
        they are: nobody is evaluated for them)."""
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
        """Launch, pause, resume or stop: a stop or a resume reaches the users inside."""
        for user_id in list(self.users):
            self._given(user_id)
        self.engine.act(journey_id, action, name)
        for user_id in list(self.users):
            self._taken(user_id)

    def _rebuild(self) -> None:
        """Take the registry as it is now, without a sweep."""
        self.engine.reload()

    # --- users ------------------------------------------------------------------------

    def user(self, user_id: str, *segments: str, **tags: Any) -> User:
        user = self.users.get(user_id)
        if user is None:
            user = self.users[user_id] = User(dict(ADDRESSES))
            self._given(user_id)
        user.members.update(dict.fromkeys(segments, 1))
        user.tags.update({name.replace("_", " "): value for name, value in tags.items()})
        return user

    def leave(self, user_id: str, segment_id: str) -> None:
        """The user leaves the segment: evaluated, the exit moves the journeys."""
        self._given(user_id)
        update = TagUpdate(user_id=user_id, tags={LEFT + segment_id: "yes"}, timestamp=self.now)
        self.engine.send(update)
        self._taken(user_id)

    def apply(self, user_id: str, input: Input) -> Outcome | None:
        """One input for the user, through the user processor."""
        self.user(user_id)
        self._given(user_id)
        if isinstance(input, Event | Feedback | JourneyEntryRequest):
            outcome = self.engine.send(input)
        else:
            outcome = self.engine.process(user_id, input)
        self._taken(user_id)
        return outcome

    def _given(self, user_id: str) -> None:
        user = self.users[user_id]
        self.engine.given(user_id, tags=user.tags, members=user.members)

    def _taken(self, user_id: str) -> None:
        record = self.engine.record(user_id)
        if record is not None:
            user = self.users[user_id]
            user.tags, user.members = dict(record.state.tags), dict(record.members)
            user.state = record.journeys.state if record.journeys is not None else None

    def _id(self) -> str:
        """Inputs of a simulation are distinct even with the same content and time."""
        self._ids += 1
        return f"sim-{self._ids}"

    # --- inputs -----------------------------------------------------------------------

    def run(self, journey_id: str, run: str = "now", due: datetime | None = None) -> None:
        """An audience run reaches every user."""
        for user_id in list(self.users):
            self.apply(user_id, AudienceRun(journey_id, run, to_ms(due) if due else None))

    def event(self, user_id: str, name: str, **attributes: Any) -> Outcome | None:
        event = Event(
            event_id=self._id(),
            user_id=user_id,
            name=name,
            timestamp=self.now,
            attributes=attributes,
        )
        return self.apply(user_id, event)

    def enter(self, journey_id: str, user_id: str, **properties: Any) -> Outcome | None:
        request = JourneyEntryRequest(
            journey_id=journey_id, user_id=user_id, at=self.now, properties=properties
        )
        return self.apply(user_id, request)

    def feedback(self, command: Mapping[str, Any], status: str = "opened") -> Outcome | None:
        feedback = Feedback(
            feedback_id=self._id(),
            command_id=command["command_id"],
            user_id=command["user_id"],
            status=FeedbackStatus(status),
            timestamp=self.now,
            channel=command["channel"],
        )
        return self.apply(command["user_id"], feedback)

    def advance(self, delta: timedelta, tick: timedelta | None = None) -> None:
        """Move time forward, firing every due timer at its own instant (with ``tick``,
        in ticks, each starting the audience runs due if schedules are on)."""
        for user_id in list(self.users):
            self._given(user_id)
        self.engine.advance(delta, tick)
        for user_id in list(self.users):
            self._taken(user_id)

    # --- reading ----------------------------------------------------------------------

    def sent(self, user_id: str | None = None) -> list[str]:
        """``step`` of each command, in order (of one user, or all)."""
        return self.engine.sent(user_id)

    def counts(self, journey_id: str | None = None) -> Counter[tuple[str, str]]:
        return self.engine.counts(journey_id)

    def rows(self, user_id: str, activity: str) -> list[dict[str, Any]]:
        return self.engine.rows(user_id, activity)
