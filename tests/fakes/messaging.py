"""The SMS and WhatsApp providers' fakes (they live in benchmarks/messaging_fakes.py,
which ``reach bench delivery`` runs against too)."""

from api.messaging import hub_signature, twilio_signature
from benchmarks.messaging_fakes import (
    SID,
    TOKEN,
    WA_PHONE_ID,
    WA_SECRET,
    WA_TOKEN,
    Answer,
    FakeTwilio,
    FakeWhatsApp,
    graph_error,
    running,
    running_in_thread,
    signed,
    twilio_error,
    whatsapp_status,
)

__all__ = [
    "SID",
    "TOKEN",
    "WA_PHONE_ID",
    "WA_SECRET",
    "WA_TOKEN",
    "Answer",
    "FakeTwilio",
    "FakeWhatsApp",
    "graph_error",
    "hub_signature",
    "running",
    "running_in_thread",
    "signed",
    "twilio_error",
    "twilio_signature",
    "whatsapp_status",
]
