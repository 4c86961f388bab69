"""Topic names and their creation.

Every user-keyed topic shares the key (the user id) and the partition count, so one
worker owns all of a user's records and state.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from streams.settings import Settings

FETCH_MAX_WAIT_MS = 20
"""How long a fetch may wait for data. A Kafka broker answers a fetch as soon as data
arrives, but the embedded broker holds it for the full wait (measured: 154 ms p50 from
produce to consume with 500 ms, 3 ms with 10 ms; Faust fixes 1500 ms, aiokafka's default
is 500 ms): every consumer here, Faust's through ``worker/transport.py``, waits this long."""


@dataclass(frozen=True)
class Topics:
    events: str
    tags: str
    feedback: str
    dead_letters: str
    definitions: str
    memberships: str
    clock: str
    journey_entries: str
    send_commands: str
    journey_activity: str
    clock_applied: str = ""
    """Compacted: per role and partition, the last tick applied (``schemas.clock``)."""
    devices: str = ""
    """Device updates (``schemas.devices.DeviceUpdate``), keyed by user."""
    profiles: str = ""
    """User profiles as their tags change (``engine.profiles``), for the projection."""

    @classmethod
    def from_settings(cls, settings: Settings) -> Topics:
        prefix = settings.topic_prefix
        return cls(
            events=f"{prefix}events",
            tags=f"{prefix}tags",
            feedback=f"{prefix}feedback",
            dead_letters=f"{prefix}dead-letters",
            definitions=f"{prefix}definitions",
            memberships=f"{prefix}memberships",
            clock=f"{prefix}clock",
            journey_entries=f"{prefix}journey-entries",
            send_commands=f"{prefix}send-commands",
            journey_activity=f"{prefix}journey-activity",
            clock_applied=f"{prefix}clock-applied",
            devices=f"{prefix}devices",
            profiles=f"{prefix}profiles",
        )

    @property
    def inputs(self) -> tuple[str, ...]:
        """The input records' topics (decoded, validated and dead-lettered alike)."""
        return (self.events, self.tags, self.feedback, *((self.devices,) if self.devices else ()))

    @property
    def user_inputs(self) -> tuple[str, ...]:
        """What moves users' state, all keyed by user: a clock tick waits for them."""
        return (*self.inputs, self.journey_entries)

    def all(self) -> tuple[str, ...]:
        return (
            *self.inputs,
            self.dead_letters,
            self.definitions,
            self.memberships,
            self.clock,
            self.journey_entries,
            self.send_commands,
            self.journey_activity,
            self.clock_applied,
            *((self.profiles,) if self.profiles else ()),
        )

    @property
    def compacted(self) -> frozenset[str]:
        """Topics where only the latest record per key matters."""
        return frozenset({self.definitions, self.clock_applied})


async def ensure_topics(
    bootstrap: str,
    names: list[str],
    partitions: int,
    replication_factor: int = 1,
    compacted: frozenset[str] = frozenset(),
) -> None:
    """Create the topics that do not exist yet (existing ones are left as they are)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(
                name=name,
                # The definitions topic is small and read whole by every worker.
                num_partitions=1 if name in compacted else partitions,
                replication_factor=replication_factor,
                topic_configs={"cleanup.policy": "compact"} if name in compacted else {},
            )
            for name in names
            if name not in existing
        ]
        if missing:
            # Another process may create them at the same moment.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
    finally:
        await admin.close()
