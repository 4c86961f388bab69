"""What the journeys benchmark defines on the system: the presets its journeys send,
the users' addresses, and the three journeys (audience launch, step latency, pending
timers)."""

from __future__ import annotations

from typing import Any

AUDIENCE = "bench-audience"
LAUNCH, LATENCY, TIMERS = "bench-launch", "bench-latency", "bench-timers"

Item = dict[str, Any]


def presets() -> list[Item]:
    """The content the bench journeys send: journeys refuse unknown presets."""
    return [
        {
            "id": "bench-email",
            "name": "Bench email",
            "channel": "email",
            "content": {
                "subject": "Bench",
                "text": "Hi {{user_id}}",
                "sender": "bench@example.com",
            },
        },
        {
            "id": "bench-push",
            "name": "Bench push",
            "channel": "push",
            "content": {"title": "Bench", "body": "Hi {{user_id}}"},
        },
    ]


def addresses(user: str) -> dict[str, str]:
    """A user's addresses on the channels the benchmark's journeys send on."""
    return {"Email": f"{user}@example.com", "Push Token": f"token-{user}"}


def journeys() -> list[Item]:
    email = {"type": "message", "channel": "email", "preset": "bench-email"}
    done = {"id": "done", "type": "exit"}
    return [
        {
            "id": LAUNCH,
            "name": "Bench: audience launch",
            "entries": [{"kind": "audience", "segment": AUDIENCE}],  # schedule: now
            "start": "email",
            "nodes": [{"id": "email", **email, "next": {"next": "done"}}, done],
        },
        {
            "id": LATENCY,
            "name": "Bench: step latency",
            "entries": [{"kind": "trigger", "match": {"event": "BenchStart"}}],
            "start": "push",
            "nodes": [
                {
                    "id": "push",
                    "type": "message",
                    "channel": "push",
                    "preset": "bench-push",
                    "split_after": {"amount": 1, "unit": "days"},
                    "next": {"opened": "email", "not_opened": "done"},
                },
                {"id": "email", **email, "next": {"next": "done"}},
                done,
            ],
        },
        {
            "id": TIMERS,
            "name": "Bench: pending timers",
            "entries": [{"kind": "api"}],
            "start": "wait",
            "nodes": [
                {
                    "id": "wait",
                    "type": "delay",
                    "duration": {"amount": 30, "unit": "days"},
                    "next": {"next": "email"},
                },
                {"id": "email", **email, "next": {"next": "done"}},
                done,
            ],
        },
    ]
