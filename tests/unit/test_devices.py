"""The device registry: its contract, its fold into a user's record, reachability in
segments and journeys, and the commands' devices."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from engine import codec
from engine import devices as registry
from engine.testing import Harness, segment
from schemas.devices import (
    MAX_DEVICES,
    DeviceOp,
    DeviceUpdate,
    EmailAddress,
    PhoneNumber,
    PushDevice,
    device_id,
)
from tests.unit.journey_sim import preset
from tests.unit.test_record_codec import STORED

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
IPHONE = {"kind": "push", "platform": "ios", "token": "a" * 64, "app_id": "com.example.app"}
PIXEL = {"kind": "push", "platform": "android", "token": "fcm-token-1", "app_id": "com.ex"}
MAIL = {"kind": "email", "address": "ana@example.com"}
PHONE = {"kind": "phone", "number": "+351912345678", "whatsapp": True}


def update(**fields: Any) -> DeviceUpdate:
    return DeviceUpdate.model_validate({"user_id": "u1", "timestamp": NOW, **fields})


# --- the contract ---------------------------------------------------------------------


def test_update_ids_are_derived_from_content() -> None:
    first = update(device=IPHONE)
    assert first.op is DeviceOp.REGISTER
    assert first.update_id == update(device=IPHONE).update_id
    assert first.update_id != update(device=PIXEL).update_id
    assert first.target == device_id(PushDevice.model_validate(IPHONE))
    gone = update(op="unregister", device_id=first.target, reason="provider: Unregistered")
    assert gone.target == first.target


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"op": "register"}, "needs a device"),
        ({"op": "unregister"}, "needs a device_id or a device"),
        ({"op": "opt_out"}, "needs a channel"),
        ({"op": "register", "device": MAIL, "channel": "email"}, "takes no channel"),
        ({"op": "register", "device": MAIL, "device_id": "x"}, "not the device's id"),
        ({"op": "unregister", "device": MAIL, "device_id": "x"}, "not the device's id"),
        ({"op": "opt_in", "channel": "sms", "device_id": "x"}, "no device"),
        ({"device": {"kind": "phone", "number": "912345678"}}, "E.164"),
        ({"device": {"kind": "fax", "number": "1"}}, "kind"),
    ],
)
def test_updates_that_do_not_fit_their_op_are_refused(fields: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        update(**fields)


# --- the registry ---------------------------------------------------------------------


def test_register_updates_unregister_unknown_is_a_no_op_and_the_limit_refuses() -> None:
    empty = registry.NO_DEVICES
    one = registry.apply(empty, update(device=IPHONE), 1).registry
    assert list(one.devices.values()) == [PushDevice.model_validate(IPHONE).model_dump(mode="json")]
    assert registry.apply(one, update(device=IPHONE), 2).registry is one  # a replay
    sandbox = registry.apply(one, update(device={**IPHONE, "environment": "sandbox"}), 3).registry
    [key] = sandbox.devices
    assert sandbox.devices[key]["environment"] == "sandbox"
    assert sandbox.since[key] == 1  # registered when first seen
    assert registry.apply(one, update(op="unregister", device_id="nope"), 4).registry is one
    full = empty
    for index in range(MAX_DEVICES):
        device = {"kind": "email", "address": f"u{index}@example.com"}
        full = registry.apply(full, update(device=device), index).registry
    refused = registry.apply(full, update(device=IPHONE), 99)
    assert refused.registry is full
    assert refused.refused is not None
    assert f"({MAX_DEVICES})" in refused.refused
    # Updating one already there is no new device.
    again = registry.apply(full, update(device={"kind": "email", "address": "u0@example.com"}), 9)
    assert again.refused is None


def test_summary_and_the_reachability_rule() -> None:
    regs = registry.apply(registry.NO_DEVICES, update(device=PHONE), 1).registry
    flags = registry.summary(regs)
    assert flags == {"sms": registry.LIVE, "whatsapp": registry.LIVE}
    assert registry.reachable("sms", flags["sms"], {})
    assert not registry.reachable("email", 0, {})
    assert registry.reachable("email", 0, {"Email": "a@b.c"})  # the tag fallback
    assert registry.reachable("in_app", 0, {})  # no address needed
    assert not registry.reachable("sms", flags["sms"], {"Unsubscribed": ["sms"]})
    assert not registry.reachable("sms", flags["sms"], {}, ["sms"])  # remembered unsubscribe
    opted_in = registry.summary(registry.consent(regs, "sms", opted_in=True))
    assert registry.reachable("sms", opted_in["sms"], {}, ["sms"])  # a later opt-in wins
    opted_out = registry.summary(registry.consent(regs, "sms", opted_in=False))
    assert not registry.reachable("sms", opted_out["sms"], {})


def test_records_stored_before_the_registry_decode_and_a_registry_round_trips() -> None:
    record = codec.decode(STORED)
    assert record.devices is None
    assert orjson.dumps(codec.encode(record)) == orjson.dumps(STORED)
    regs = registry.apply(registry.NO_DEVICES, update(device=MAIL), 5).registry
    stored = orjson.loads(orjson.dumps(codec.encode(record._replace(devices=regs))))
    assert codec.decode(stored).devices == regs
    assert codec.encode(codec.decode(stored)) == stored


# --- segments -------------------------------------------------------------------------


def reach_harness() -> Harness:
    return Harness(
        segments=[
            segment("push", 'R("push")'),
            segment("mail", 'R("email", registered)'),
            segment("nosms", 'T("Country", eq, "PT") - R("sms")'),
        ]
    )


def test_segment_membership_follows_registrations() -> None:
    engine = reach_harness()
    engine.register("u1", IPHONE)
    assert engine.members("push") == {"u1"}
    assert engine.members("mail") == set()
    engine.register("u1", MAIL)
    assert engine.members("mail") == {"u1"}
    engine.consent("u1", "push", opted_in=False)
    assert engine.members("push") == set()
    engine.consent("u1", "push", opted_in=True)
    assert engine.members("push") == {"u1"}
    engine.unregister("u1", device_id(PushDevice.model_validate(IPHONE)), "provider: Unregistered")
    assert engine.members("push") == set()
    engine.unregister("u1", "unknown")  # nothing happens
    assert engine.members("mail") == {"u1"}


def test_reachability_conditions_read_the_opt_out_and_address_tags() -> None:
    engine = reach_harness()
    engine.tags("u1", Country="PT")
    assert engine.members("nosms") == {"u1"}
    engine.tags("u1", Phone="+351912345678")
    assert engine.members("nosms") == set()
    engine.tags("u1", op="append", Unsubscribed="sms")
    assert engine.members("nosms") == {"u1"}


def test_a_replayed_device_update_changes_nothing() -> None:
    engine = reach_harness()
    first = update(device=IPHONE, timestamp=engine.now)
    engine.send(first)
    stored = dict(engine.stored["u1"])
    from engine import processor as core

    again = core.process(
        engine.model, "u1", codec.decode(stored), core.Received(first, "d", 99), engine.now
    )
    assert again is not None
    assert again.changes == []
    assert codec.encode(again.record)["v"] == stored["v"]


def test_a_registration_beyond_the_limit_is_refused_with_a_reason() -> None:
    engine = reach_harness()
    for index in range(MAX_DEVICES):
        engine.register("u1", {"kind": "email", "address": f"u{index}@example.com"})
    assert engine.refused == []
    engine.register("u1", IPHONE)
    [(item, reason)] = engine.refused
    assert isinstance(item, DeviceUpdate)
    assert "unregister one first" in reason
    assert engine.members("push") == set()


# --- journeys -------------------------------------------------------------------------


def journey(channel: str) -> dict[str, Any]:
    return {
        "id": "j",
        "name": "J",
        "entries": [{"kind": "api"}],
        "start": "check",
        "nodes": [
            {"id": "check", "type": "reachability", "channel": channel,
             "next": {"reachable": "send", "unreachable": "done"}},
            {"id": "send", "type": "message", "channel": channel, "preset": "p",
             "next": {"next": "done"}},
            {"id": "done", "type": "exit"},
        ],
    }  # fmt: skip


def test_a_message_goes_to_every_live_device_of_its_channel() -> None:
    engine = Harness(journeys=[journey("push")], presets=[preset("p", "push")])
    engine.register("u1", IPHONE)
    engine.register("u1", PIXEL)
    engine.register("u1", MAIL)
    engine.enter("j", "u1")
    [command] = engine.commands
    assert command["channel"] == "push"
    assert [device["token"] for device in command["devices"]] == [IPHONE["token"], PIXEL["token"]]
    assert command["address"] is None


def test_email_from_the_registry_fills_the_address_and_the_tag_still_works() -> None:
    engine = Harness(journeys=[journey("email")], presets=[preset("p", "email")])
    engine.register("u1", MAIL)
    engine.enter("j", "u1")
    [command] = engine.commands
    assert command["address"] == "ana@example.com"
    assert command["devices"] == [EmailAddress.model_validate(MAIL).model_dump(mode="json")]
    engine.tags("u2", Email="old@example.com")
    engine.enter("j", "u2")
    assert engine.commands[-1]["address"] == "old@example.com"
    assert "devices" not in engine.commands[-1]


def test_no_live_device_and_no_tag_is_unreachable_and_an_unsubscribe_opts_out() -> None:
    engine = Harness(journeys=[journey("sms")], presets=[preset("p", "sms")])
    engine.register("u1", PHONE)
    engine.unregister("u1", device_id(PhoneNumber.model_validate(PHONE)))
    engine.enter("j", "u1")
    assert engine.commands == []
    assert [row["step"] for row in engine.rows("u1", "exited")] == ["done"]
    segments = reach_harness()
    segments.register("u2", IPHONE)
    assert segments.members("push") == {"u2"}
    segments.send(
        __import__("schemas.feedback", fromlist=["Feedback"]).Feedback(
            command_id="c1", user_id="u2", status="unsubscribed", timestamp=NOW, channel="push"
        )
    )
    assert segments.members("push") == set()


# --- the projection -------------------------------------------------------------------


def test_the_projection_keeps_no_token_in_clear_and_hashes_personal_data() -> None:
    from projections import rows
    from projections.addresses import CLEAR, AddressMask

    origin = rows.Origin(3, 17)
    keyed = AddressMask(b"k" * 32)
    row = dict(
        zip(
            rows.DEVICES.columns,
            rows.device_row(update(device=IPHONE), origin, NOW, keyed),
            strict=True,
        )
    )
    assert row["kind"] == "push"
    assert (row["platform"], row["app_id"], row["environment"]) == (
        "ios",
        "com.example.app",
        "production",
    )
    assert row["channels"] == ["push"]
    assert row["live"] == 1
    assert row["registered_at"] == NOW
    assert row["unregistered_at"] is None
    assert IPHONE["token"] not in str(row)
    clear = rows.device_row(update(device=IPHONE), origin, NOW, CLEAR)
    assert IPHONE["token"] not in str(clear)  # a secret, even with addresses in clear
    phone = dict(
        zip(
            rows.DEVICES.columns,
            rows.device_row(update(device=PHONE), origin, NOW, keyed),
            strict=True,
        )
    )
    assert PHONE["number"] not in str(phone)
    assert phone["channels"] == ["sms", "whatsapp"]
    shown = dict(
        zip(
            rows.DEVICES.columns,
            rows.device_row(update(device=PHONE), origin, NOW, CLEAR),
            strict=True,
        )
    )
    assert shown["address"] == PHONE["number"]
    gone = update(op="unregister", device_id="abc", reason="provider: Unregistered")
    row = dict(zip(rows.DEVICES.columns, rows.device_row(gone, origin, NOW, keyed), strict=True))
    assert (row["device_id"], row["live"], row["unregistered_at"], row["reason"]) == (
        "abc",
        0,
        NOW,
        "provider: Unregistered",
    )
    opted = dict(
        zip(
            rows.DEVICES.columns,
            rows.device_row(update(op="opt_out", channel="sms"), origin, NOW, keyed),
            strict=True,
        )
    )
    assert (opted["device_id"], opted["kind"], opted["live"]) == ("consent:sms", "consent", 0)
