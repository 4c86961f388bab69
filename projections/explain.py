"""``reach explain``: one user's timeline from the projections, and why they did or did
not get a journey step's message.

The facts are the user's rows in ClickHouse (``fetch``): their inputs (events, tag
updates, feedback), their membership changes with the condition values that decided
them, their journey activity with what made each row, and their send commands. The
timeline (``timeline``) orders them by event time; the answer (``why_not``) reads the
journey's rows, and for a user who never entered an audience journey re-evaluates the
entry segment at the run's instant over the user's archived inputs with the pure
engine (``engine.testing.Harness``): the failing condition and its values then. Every
answer cites the rows it rests on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from clickhouse_connect.driver.client import Client

from engine.segments.reasons import describe, explain_at
from engine.testing import Harness
from engine.time import to_ms
from schemas.events import Event
from schemas.feedback import Feedback
from schemas.journey_nodes import MessageNode, WebhookNode
from schemas.journeys import AudienceEntry, JourneyDefinition
from schemas.segments import SegmentDefinition, references
from schemas.tags import TagUpdate

Row = dict[str, Any]
LIMIT = 10_000
"""Rows read per table for one user."""


@dataclass
class Facts:
    """One user's rows, by table (columns as the tables name them)."""

    user_id: str
    events: list[Row] = field(default_factory=list)
    tag_updates: list[Row] = field(default_factory=list)
    feedback: list[Row] = field(default_factory=list)
    memberships: list[Row] = field(default_factory=list)
    activity: list[Row] = field(default_factory=list)
    commands: list[Row] = field(default_factory=list)
    runs: dict[str, datetime] = field(default_factory=dict)
    """The journey's runs (any user's) -> their first entry's instant: when a run
    reached users, for a user it did not enter."""


_QUERIES = {
    "events": "SELECT event_id, name, ts, attributes FROM {db:Identifier}.events FINAL"
    " WHERE user_id = {user:String} ORDER BY ts LIMIT {limit:UInt32}",
    "tag_updates": "SELECT update_id, op, tags, ts FROM {db:Identifier}.tag_updates FINAL"
    " WHERE user_id = {user:String} ORDER BY ts LIMIT {limit:UInt32}",
    "feedback": "SELECT feedback_id, command_id, status, channel, reason, ts, journey_id, step"
    " FROM {db:Identifier}.feedback FINAL WHERE user_id = {user:String}"
    " ORDER BY ts LIMIT {limit:UInt32}",
    "memberships": "SELECT change_id, segment_id, change, at, version, cause, condition_values"
    " FROM {db:Identifier}.segment_memberships FINAL WHERE user_id = {user:String}"
    " ORDER BY at LIMIT {limit:UInt32}",
    "activity": "SELECT activity_id, journey_id, journey_version, run, step, activity, at,"
    " detail, command_id, visit, cause, trigger FROM {db:Identifier}.journey_activity FINAL"
    " WHERE user_id = {user:String} ORDER BY at, visit LIMIT {limit:UInt32}",
    "commands": "SELECT command_id, channel, preset, journey_id, step, visit, at"
    " FROM {db:Identifier}.send_commands FINAL WHERE user_id = {user:String}"
    " ORDER BY at LIMIT {limit:UInt32}",
}

_RUNS = (
    "SELECT run, min(at) FROM {db:Identifier}.journey_activity"
    " WHERE journey_id = {journey:String} AND activity = 'entered' AND detail = 'journey'"
    " GROUP BY run"
)


def fetch(client: Client, database: str, user_id: str, journey_id: str | None = None) -> Facts:
    """The user's rows (and, with ``journey_id``, the journey's runs)."""
    facts = Facts(user_id)
    parameters = {"db": database, "user": user_id, "limit": LIMIT}
    for name, sql in _QUERIES.items():
        result = client.query(sql, parameters=parameters)
        columns = result.column_names
        found = [
            {column: _utc(value) for column, value in zip(columns, row, strict=True)}
            for row in result.result_rows
        ]
        setattr(facts, name, found)
    if journey_id is not None:
        result = client.query(_RUNS, parameters={"db": database, "journey": journey_id})
        facts.runs = {str(run): _utc(at) for run, at in result.result_rows}
    return facts


def _utc(value: Any) -> Any:
    """The tables' instants are UTC; the client may read them without their zone."""
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


# --- the timeline -------------------------------------------------------------------------


def _iso(moment: datetime) -> str:
    spec = "milliseconds" if moment.microsecond else "seconds"
    return moment.astimezone(UTC).isoformat(timespec=spec).replace("+00:00", "Z")


def timeline(
    facts: Facts,
    journey: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    segments: Iterable[str] | None = None,
    definitions: Mapping[str, SegmentDefinition] | None = None,
) -> list[Row]:
    """The user's moments, by event time: ``at``, ``kind`` (input, membership, journey,
    send), ``what`` happened, ``why`` (the cause, the condition values, the branch),
    and ``id`` (the row's identity, to cite). With ``journey``: its rows, and the
    membership changes of ``segments`` (its audience) only. A change's condition values
    are put in words with the segment's definition in ``definitions`` when it is of the
    change's version."""
    kept = set(segments) if segments is not None else None
    moments: list[tuple[datetime, tuple[int, ...], Row]] = []

    def add(
        at: datetime, order: tuple[int, ...], kind: str, what: str, why: str, identity: str
    ) -> None:
        """``order``: among moments of one instant (inputs, then membership changes,
        then a visit's rows by its step count, a step's entry first, its send after)."""
        if (start is None or at >= start) and (end is None or at < end):
            row = {"at": _iso(at), "kind": kind, "what": what, "why": why, "id": identity}
            moments.append((at, order, row))

    if journey is None:
        for event in facts.events:
            attributes = event["attributes"]
            shown = "" if attributes in ("", "{}", None) else f" {attributes}"
            add(event["ts"], (0,), "input", f"event {event['name']}{shown}", "", event["event_id"])
        for update in facts.tag_updates:
            tags = update["tags"]
            add(update["ts"], (0,), "input", f"tags {update['op']} {tags}", "", update["update_id"])
    for item in facts.feedback:
        if journey is not None and item["journey_id"] != journey:
            continue
        reason = f" ({item['reason']})" if item["reason"] else ""
        add(
            item["ts"],
            (0,),
            "input",
            f"feedback {item['status']} on {item['channel']}{reason}",
            f"command {item['command_id']}",
            item["feedback_id"],
        )
    for change in facts.memberships:
        if kept is not None and change["segment_id"] not in kept:
            continue
        why = "; ".join(_condition_values(change, definitions or {}))
        cause = describe_cause(change["cause"])
        add(
            change["at"],
            (1,),
            "membership",
            f"{change['change']} segment {change['segment_id']} (v{change['version']})",
            f"{why}; by {cause}" if cause else why,
            change["change_id"],
        )
    for row in facts.activity:
        if journey is not None and row["journey_id"] != journey:
            continue
        order = (2, row["visit"], 0 if row["activity"] == "entered" else 1)
        add(
            row["at"], order, "journey", _activity_text(row), _activity_why(row), row["activity_id"]
        )
    for command in facts.commands:
        if journey is not None and command["journey_id"] != journey:
            continue
        add(
            command["at"],
            (2, command["visit"], 2),
            "send",
            f"{command['channel']} {command['preset'] or ''}".rstrip()
            + f" ({command['journey_id']} / {command['step']})",
            "",
            command["command_id"],
        )
    moments.sort(key=lambda item: (item[0], item[1]))
    return [row for _, _, row in moments]


def _condition_values(change: Row, definitions: Mapping[str, SegmentDefinition]) -> list[str]:
    """A change's condition values in words, with its definition if it is the version
    that read them; as recorded otherwise."""
    text = change.get("condition_values") or ""
    if not text:
        deleted = change["change"] == "exited" and change["cause"].startswith("d:")
        return ["segment deleted" if deleted else "no values recorded"]
    found = orjson.loads(text)
    definition = definitions.get(change["segment_id"])
    if definition is None or definition.version != change["version"] or not isinstance(found, list):
        return [f"values {text} (read for version {change['version']})"]
    at = to_ms(change["at"])
    return describe(definition.condition, found, at, ZoneInfo(definition.timezone))


def _activity_text(row: Row) -> str:
    journey, step, activity, detail = row["journey_id"], row["step"], row["activity"], row["detail"]
    if activity == "entered" and detail == "journey":
        return f"{journey}: entered the journey (run {row['run']}) at {step}"
    if activity == "entered":
        return f"{journey}: step {step}" + (f" via {detail}" if detail else "")
    text = f"{journey}: {step} {activity}"
    return text + (f" ({detail})" if detail else "")


def _activity_why(row: Row) -> str:
    parts = []
    if row["activity"] == "entered" and row["detail"] and row["detail"] != "journey":
        parts.append(f"branch {row['detail']}")
    trigger = describe_cause(row.get("trigger") or row.get("cause") or "")
    if trigger:
        parts.append(trigger)
    if row["command_id"]:
        parts.append(f"command {row['command_id']}")
    return "; ".join(parts)


def describe_cause(cause: str) -> str:
    """A cause or trigger in words: ``e:ID`` -> ``event ID``, ``timer:MS`` -> the
    instant, ..."""
    kind, _, value = cause.partition(":")
    if not cause:
        return ""
    if kind == "timer" and value.isdigit():
        return f"timer due {_iso(datetime.fromtimestamp(int(value) / 1000, tz=UTC))}"
    names = {
        "e": "event",
        "t": "tag update",
        "f": "feedback",
        "a": "API entry",
        "r": "audience run",
        "d": "definition change",
        "stop": "journey stopped",
    }
    return f"{names[kind]} {value}" if kind in names else cause


# --- why not ------------------------------------------------------------------------------


def why_not(
    facts: Facts,
    definition: JourneyDefinition,
    segments: Mapping[str, SegmentDefinition],
    step: str | None = None,
) -> Row:
    """Why the user did (or did not) get ``step``'s message (default: the journey's
    first message step): ``answer`` (a short code), ``text`` (one sentence) and
    ``cites`` (the ids and instants it rests on)."""
    target = step or _first_message(definition)
    rows = [row for row in facts.activity if row["journey_id"] == definition.id]
    sent = [row for row in rows if row["step"] == target and row["activity"] == "sent"]
    if sent:
        row = sent[-1]
        opened = [
            item
            for item in facts.feedback
            if item["command_id"] == row["command_id"] and item["status"] in ("opened", "clicked")
        ]
        cites = [row["activity_id"], row["command_id"], *(item["feedback_id"] for item in opened)]
        text = f"got {target}'s message at {_iso(row['at'])} (command {row['command_id']})"
        if opened:
            text += f", and opened it at {_iso(opened[0]['ts'])}"
        return _answer("sent", text, cites, target)
    at_step = [row for row in rows if row["step"] == target]
    for activity, answer, sentence in (
        ("capped", "capped", "the frequency cap held the message back"),
        ("suppressed", "opted_out", "the user opted out of the channel"),
        ("unreachable", "unreachable", "the user has no address on the channel"),
    ):
        found = [row for row in at_step if row["activity"] == activity]
        if found:
            row = found[-1]
            detail = f" ({row['detail']})" if row["detail"] else ""
            return _answer(
                answer,
                f"entered {target} at {_iso(row['at'])}, but {sentence}{detail}",
                [row["activity_id"], row.get("trigger") or row["cause"]],
                target,
            )
    if rows:
        return _inside_answer(rows, definition, target)
    return _never_entered(facts, definition, segments, target)


def _answer(answer: str, text: str, cites: Sequence[str], step: str) -> Row:
    return {"answer": answer, "step": step, "text": text, "cites": [c for c in cites if c]}


def _first_message(definition: JourneyDefinition) -> str:
    for node in definition.nodes:
        if isinstance(node, MessageNode | WebhookNode):
            return node.id
    return definition.start


def _inside_answer(rows: list[Row], definition: JourneyDefinition, target: str) -> Row:
    """The user entered: what ended the visit before the step, or where it waits."""
    last = rows[-1]
    cites = [last["activity_id"], last.get("trigger") or last["cause"]]
    activity, detail, at = last["activity"], last["detail"], _iso(last["at"])
    if activity == "skipped":
        return _answer("entry_refused", f"the entry at {at} was refused: {detail}", cites, target)
    if activity == "goal" or (activity == "exited" and detail.startswith("goal")):
        return _answer("goal_reached", f"reached the goal at {at} ({detail})", cites, target)
    if activity == "dropped" and detail == "left segment":
        text = f"left the journey at {at}: left its segment"
        return _answer("left_segment", text, cites, target)
    if activity == "dropped" and detail == "journey stopped":
        return _answer("journey_stopped", f"the journey stopped at {at}", cites, target)
    if activity in ("exited", "dropped"):
        taken = [row for row in rows if row["activity"] == "entered" and row["detail"]]
        branch = next((row for row in reversed(taken) if row["detail"] != "journey"), None)
        text = f"left the journey at {at} ({detail}) without reaching {target}"
        if branch is not None:
            text += f": it took {branch['detail']} ({describe_cause(branch.get('trigger', ''))})"
            cites.append(branch["activity_id"])
        return _answer("other_branch", text, cites, target)
    node = next((node for node in definition.nodes if node.id == last["step"]), None)
    until = ""
    if isinstance(node, MessageNode) and node.split_after is not None and activity == "sent":
        until = f" until {_iso(last['at'] + node.split_after.delta)}"
    elif definition.settings.silent_hours and activity == "entered":
        until = " for silent hours to end"
    return _answer(
        "waiting", f"still inside, at step {last['step']} since {at}, waiting{until}", cites, target
    )


def _never_entered(
    facts: Facts,
    definition: JourneyDefinition,
    segments: Mapping[str, SegmentDefinition],
    target: str,
) -> Row:
    audiences = [entry.segment for entry in definition.entries if isinstance(entry, AudienceEntry)]
    if not audiences or not facts.runs:
        return _answer(
            "never_entered", f"never entered {definition.id} (no entry of this user)", [], target
        )
    run, instant = max(facts.runs.items(), key=lambda item: item[1])
    segment = audiences[0]
    members = [c for c in facts.memberships if c["segment_id"] == segment and c["at"] <= instant]
    cites = [f"run {run} at {_iso(instant)}"]
    if members and members[-1]["change"] == "entered":
        cites.append(members[-1]["change_id"])
        text = (
            f"in {segment} at run {run} ({_iso(instant)}) but not entered"
            " (the journey's entry rules)"
        )
        return _answer("not_entered", text, cites, target)
    if members:
        cites.append(members[-1]["change_id"])
    values = segment_values(facts, segments, segment, instant)
    failing = [line for line in values if line.endswith("-> false")] or values
    cites += [row["event_id"] for row in facts.events if row["ts"] <= instant][-5:]
    text = f"not in {segment} at run {run} ({_iso(instant)}): " + "; ".join(failing)
    return {**_answer("not_in_segment", text, cites, target), "conditions": values}


def segment_values(
    facts: Facts, segments: Mapping[str, SegmentDefinition], segment: str, instant: datetime
) -> list[str]:
    """The values of ``segment``'s conditions at ``instant`` for the user, from their
    archived inputs up to then, with the pure engine."""
    needed = _with_references(segments, segment)
    harness = Harness(now=_first_input(facts, instant))
    harness.define(*needed)
    inputs: list[tuple[datetime, Event | TagUpdate | Feedback]] = []
    for row in facts.events:
        attributes = orjson.loads(row["attributes"] or "{}")
        event = Event(
            event_id=row["event_id"],
            user_id=facts.user_id,
            name=row["name"],
            timestamp=row["ts"],
            attributes=attributes,
        )
        inputs.append((row["ts"], event))
    for row in facts.tag_updates:
        update = TagUpdate.model_validate(
            {
                "update_id": row["update_id"],
                "user_id": facts.user_id,
                "op": row["op"],
                "tags": orjson.loads(row["tags"] or "{}"),
                "timestamp": row["ts"],
            }
        )
        inputs.append((row["ts"], update))
    for row in facts.feedback:
        feedback = Feedback.model_validate(
            {
                "feedback_id": row["feedback_id"],
                "command_id": row["command_id"],
                "user_id": facts.user_id,
                "status": row["status"],
                "channel": row["channel"],
                "timestamp": row["ts"],
            }
        )
        inputs.append((row["ts"], feedback))
    for at, item in sorted(inputs, key=lambda pair: pair[0]):
        if at > instant:
            break
        harness.advance_to(max(at, harness.now))
        harness.send(item)
    harness.advance_to(max(instant, harness.now))
    record = harness.record(facts.user_id)
    if record is None:
        harness.tags(facts.user_id, op="set")
        record = harness.record(facts.user_id)
    assert record is not None
    zone = harness.model.index.plans[segment][1]
    definition = segments[segment]
    return explain_at(
        definition.condition, record.state, to_ms(instant), zone, record.members.__contains__
    )


def _first_input(facts: Facts, instant: datetime) -> datetime:
    times: list[datetime] = [
        row["ts"] for row in (*facts.events, *facts.tag_updates, *facts.feedback)
    ]
    return min([*times, instant])


def _with_references(
    segments: Mapping[str, SegmentDefinition], segment: str
) -> list[SegmentDefinition]:
    """``segment`` and the segments it refers to, those referred to first."""
    order: list[SegmentDefinition] = []
    seen: set[str] = set()

    def visit(segment_id: str) -> None:
        if segment_id in seen or segment_id not in segments:
            return
        seen.add(segment_id)
        definition = segments[segment_id]
        for referred in sorted(references(definition.condition)):
            visit(referred)
        order.append(definition.model_copy(update={"version": 0}))

    visit(segment)
    return order


def explain(
    facts: Facts,
    definition: JourneyDefinition | None,
    segments: Mapping[str, SegmentDefinition],
    step: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> Row:
    """The answer of ``GET /v1/users/{id}/explain``: the timeline, and with a journey,
    why the user did or did not get its step's message."""
    audience = None
    if definition is not None:
        audience = [e.segment for e in definition.entries if isinstance(e, AudienceEntry)]
    answer: Row = {
        "user_id": facts.user_id,
        "timeline": timeline(
            facts, definition.id if definition else None, start, end, audience, segments
        ),
    }
    if definition is not None:
        answer["journey_id"] = definition.id
        answer["why"] = why_not(facts, definition, segments, step)
    return answer
