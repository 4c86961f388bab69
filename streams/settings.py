"""Configuration from environment variables (prefix ``REACH_``); docs/configuration.md
lists them all."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from streams.outbound import AllowEntry, parse_allow_list

SimulatedChannelName = Literal["push", "web_push", "email", "sms", "whatsapp", "in_app"]
Probability = Annotated[float, Field(ge=0, le=1)]
BrokerStorage = Literal["durable", "memory"]


class SimulatedChannel(BaseModel):
    """Overrides of how the simulator treats one channel (delivery/simulator.py
    holds the defaults); what is left out keeps its default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    delivered: Probability | None = None
    opened: Probability | None = Field(default=None, description="Given delivered.")
    clicked: Probability | None = Field(default=None, description="Given opened.")
    unsubscribed: Probability | None = Field(default=None, description="Given opened.")
    delivery_seconds: float | None = Field(default=None, ge=0)
    open_hours: float | None = Field(default=None, gt=0, description="Mean delay of an open.")
    click_minutes: float | None = Field(default=None, gt=0, description="Mean, after the open.")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REACH_", frozen=True)

    broker_url: str | None = Field(
        default=None,
        description="Kafka bootstrap servers, e.g. kafka://k1:9092,k2:9092. "
        "Unset: start the embedded broker.",
    )
    broker_storage: BrokerStorage = Field(
        default="durable",
        description="Storage of the embedded broker. durable: topics kept under "
        "<data dir>/broker by a local S3 object store (SeaweedFS), across restarts and "
        "crashes. memory: topics lost when the system stops (tests).",
    )
    broker_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Port of the embedded broker. Unset: the one used last time from this "
        "data dir (recorded in <data dir>/broker-port), else a free one.",
    )
    clickhouse_dsn: str | None = Field(
        default=None,
        description="chdb://<dir> (embedded engine) or http(s)://user:pass@host:8123. "
        "Unset: chdb://<data dir>/clickhouse.",
    )
    clickhouse_database: str = Field(default="reach", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    # The analysts' query door (POST /v1/query, reach query); docs/security.md.
    query_dsn: str | None = Field(
        default=None,
        description="ClickHouse DSN of analysts' queries: on a server, a read-only user "
        "with grants on the reach database only. Unset: the main DSN (on chDB a "
        "connection of its own either way).",
    )
    query_timeout_seconds: float = Field(
        default=30.0, gt=0, le=3600, description="max_execution_time of one query."
    )
    query_max_memory_bytes: int = Field(
        default=1_000_000_000, ge=10_000_000, description="max_memory_usage of one query."
    )
    query_max_result_rows: int = Field(
        default=1_000_000, ge=1, description="max_result_rows: a larger answer is refused."
    )
    query_max_result_bytes: int = Field(
        default=100_000_000, ge=1024, description="max_result_bytes: a larger answer is refused."
    )
    query_concurrency: int = Field(
        default=2, ge=1, le=64, description="Analysts' queries running at once; more wait."
    )
    data_dir: Path = Field(
        default=Path(".reach"),
        validate_default=True,
        description="State, tables and run files; made absolute (from the working "
        "directory) once, when the settings are read.",
    )
    topic_prefix: str = Field(default="reach.", pattern=r"^[A-Za-z0-9._-]*$")
    partitions: int = Field(default=4, ge=1, le=1024)
    replication_factor: int = Field(default=1, ge=1)
    broker_session_timeout: float = Field(
        default=6.0, gt=0, description="Seconds; a worker joins its group in about half."
    )
    table_store: Literal["memory", "rocksdb"] = "rocksdb"
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8642, ge=0, le=65535)
    api_keys: str = Field(
        default="",
        description="KEY:SCOPE[+SCOPE],... with scopes ingest, read, inapp, admin. "
        "Required when the HTTP API binds to a non-loopback address.",
    )
    max_record_bytes: int = Field(default=1_000_000, ge=1024)
    max_request_bytes: int = Field(default=16_000_000, ge=1024)
    max_batch_items: int = Field(default=50_000, ge=1)
    http_header_timeout: float = Field(
        default=30.0,
        gt=0,
        description="Seconds a client has to send a request's headers, from the moment "
        "it connects or its previous answer was sent; an idle connection closes then too.",
    )
    http_body_timeout: float = Field(
        default=60.0, gt=0, description="Seconds a client has to send a request's body."
    )
    events_per_record: int = Field(
        default=500, ge=1, description="How many events the ingest path packs per Kafka record."
    )
    projection_flush_rows: int = Field(default=50_000, ge=1)
    projection_flush_seconds: float = Field(default=0.5, gt=0)
    clock: Literal["wall", "simulated"] = Field(
        default="wall",
        description="wall: real time. simulated: time moves only with ticks on the clock "
        "topic (reach clock) and event timestamps, for tests, demos and replays.",
    )
    segment_horizon_days: int = Field(
        default=90, ge=1, le=3660, description="How long per-user event counts are kept."
    )
    global_holdout_percent: float = Field(
        default=0.0,
        ge=0,
        le=50,
        description="Share of users (percent, 0 to 50) kept out of every journey as the "
        "global control group: no message, a held_out row at each entry, their goals "
        "counted apart (holdout_goal) for lift. 0: nobody.",
    )
    global_holdout_salt: str = Field(
        default="reach",
        max_length=256,
        description="Who is held out follows from a hash of the user id and this salt: "
        "the same users while it stays the same; a new salt draws a new group.",
    )
    role: Literal["all", "projections", "segments", "delivery"] = Field(
        default="all",
        description="What this worker does. all: everything (the embedded default). "
        "projections: validation, dead letters and ClickHouse. segments: segment state and "
        "memberships. delivery: send commands through the channel adapters. Each role is "
        "its own consumer group, so they scale apart.",
    )
    app_id: str = "reachstream"
    log_level: str = "warning"

    # Delivery (agents/delivery/).
    deliver: bool = Field(
        default=True,
        description="Role all delivers send commands; false leaves them to other consumers.",
    )
    delivery_rate_per_second: dict[str, Annotated[float, Field(gt=0)]] = Field(
        default_factory=dict, description="Sends per second per channel; absent: no limit."
    )
    delivery_concurrency: int = Field(default=16, ge=1, le=1024)
    delivery_max_attempts: int = Field(default=5, ge=1, le=100)
    delivery_retry_seconds: float = Field(
        default=30.0, gt=0, description="First wait after a provider fault; doubles, up to 1 h."
    )
    delivery_ledger_days: int = Field(default=30, ge=1, le=3660)
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    webhook_allow: str = Field(
        default="",
        max_length=10_000,
        description="Internal addresses webhooks may reach: IP[:PORT] or NETWORK, "
        "comma-separated (e.g. 127.0.0.1:9000,10.0.0.0/8). Empty: public addresses only.",
    )
    simulator: dict[SimulatedChannelName, SimulatedChannel] = Field(default_factory=dict)
    simulator_seed: int = 0

    @field_validator("data_dir")
    @classmethod
    def _absolute_data_dir(cls, value: Path) -> Path:
        # Once, here: a process that changes directory later, or hands the path to
        # another, still means the same place.
        return value.expanduser().resolve()

    @field_validator("topic_prefix")
    @classmethod
    def _no_leading_dot(cls, value: str) -> str:
        if value.startswith("."):
            raise ValueError("topic prefix must not start with a dot")
        return value

    @field_validator("webhook_allow")
    @classmethod
    def _readable_allow_list(cls, value: str) -> str:
        parse_allow_list(value)
        return value

    @property
    def webhook_allow_list(self) -> tuple[AllowEntry, ...]:
        return parse_allow_list(self.webhook_allow)

    @model_validator(mode="after")
    def _delivery_role_delivers(self) -> Settings:
        if self.role == "delivery" and not self.deliver:
            raise ValueError("role delivery needs deliver=true")
        return self

    @property
    def fcm_configured(self) -> bool:
        return bool(
            self.fcm_service_account_file or self.fcm_service_account_json.get_secret_value()
        )

    @property
    def apns_configured(self) -> bool:
        key = self.apns_key_file or self.apns_key.get_secret_value()
        return bool(key and self.apns_key_id and self.apns_team_id)

    @property
    def web_push_configured(self) -> bool:
        key = self.vapid_private_key_file or self.vapid_private_key.get_secret_value()
        return bool(key and self.vapid_subject)

    @property
    def clickhouse(self) -> str:
        return self.clickhouse_dsn or f"chdb://{self.data_dir / 'clickhouse'}"

    @property
    def query_clickhouse(self) -> str:
        """The DSN of analysts' queries."""
        return self.query_dsn or self.clickhouse

    @property
    def group_id(self) -> str:
        """The consumer group: one per role, as each role reads every input record."""
        return self.app_id if self.role == "all" else f"{self.app_id}-{self.role}"

    @property
    def projects(self) -> bool:
        return self.role in ("all", "projections")

    @property
    def segments(self) -> bool:
        return self.role in ("all", "segments")

    @property
    def delivers(self) -> bool:
        return self.deliver and self.role in ("all", "delivery")

    @property
    def http_is_loopback(self) -> bool:
        if self.http_host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.http_host).is_loopback
        except ValueError:
            return False

    # Email (delivery/email.py).
    smtp_host: str = Field(
        default="", description="SMTP server of the email channel; empty: the simulator."
    )
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_starttls: bool | None = Field(
        default=None, description="None: upgrade when the server offers STARTTLS."
    )
    tracking_secret: str = Field(
        default="",
        description="Key of the open/click tracking tokens; empty: one kept in the data dir.",
    )
    # Mobile and web push (delivery/push.py, docs/channels.md). Secrets from a file or
    # the environment; SecretStr keeps them out of logs and reprs.
    fcm_service_account_file: Path | None = Field(
        default=None, description="FCM: the service account's JSON key file."
    )
    fcm_service_account_json: SecretStr = Field(
        default=SecretStr(""), description="FCM: the service account's JSON key itself."
    )
    fcm_project_id: str = Field(default="", description="FCM: empty: the service account's.")
    fcm_base_url: str = "https://fcm.googleapis.com"
    fcm_token_url: str = Field(default="", description="OAuth2 token URL; empty: the key's.")
    fcm_rate_per_second: float | None = Field(default=None, gt=0)
    apns_key_file: Path | None = Field(default=None, description="APNs: the .p8 signing key.")
    apns_key: SecretStr = Field(default=SecretStr(""), description="APNs: the .p8 key's PEM.")
    apns_key_id: str = ""
    apns_team_id: str = ""
    apns_production_url: str = "https://api.push.apple.com"
    apns_sandbox_url: str = "https://api.sandbox.push.apple.com"
    apns_rate_per_second: float | None = Field(default=None, gt=0)
    vapid_private_key_file: Path | None = Field(
        default=None, description="Web push: the VAPID private key (PEM)."
    )
    vapid_private_key: SecretStr = Field(
        default=SecretStr(""), description="Web push: the VAPID private key (PEM or base64url)."
    )
    vapid_subject: str = Field(default="", description="Web push: mailto: or https: contact.")
    web_push_rate_per_second: float | None = Field(default=None, gt=0)
    push_app_rate_per_second: float | None = Field(
        default=None, gt=0, description="Push sends per second per app id, per worker."
    )
    push_ca_file: Path | None = Field(
        default=None, description="More CA certificates (PEM) trusted by the push channels."
    )
    push_timeout_seconds: float = Field(default=10.0, gt=0)
    push_attempts: int = Field(
        default=3, ge=1, le=10, description="Tries of one device within a delivery."
    )
    push_retry_after_max_seconds: float = Field(
        default=30.0,
        ge=0,
        description="A longer Retry-After is left to the worker's retry of the command.",
    )
    # Personal data (projections/addresses.py).
    pii_key: str = Field(
        default="",
        description="Key of the hashes of addresses in ClickHouse; empty: one kept in the "
        "data dir.",
    )
    pii_clear_text: bool = Field(
        default=False, description="Project addresses to ClickHouse in clear, not hashed."
    )
    pii_tags: str = Field(
        default="",
        max_length=10_000,
        description="More tags to hash, comma-separated, besides the address tags.",
    )
    tracking_base_url: str = Field(
        default="", description="Public URL of the HTTP API in emails; empty: its own URL."
    )
    # SMS, WhatsApp and in-app (delivery/sms.py, delivery/whatsapp.py, delivery/inapp.py);
    # each channel goes to the simulator until it is configured. Secrets: the value, or
    # the *_file setting naming a file that holds it.
    twilio_account_sid: str = Field(
        default="", description="Account SID of the SMS provider; empty: SMS is simulated."
    )
    twilio_auth_token: SecretStr | None = None
    twilio_auth_token_file: Path | None = None
    twilio_from: str = Field(default="", description="Sender id or number of SMS messages.")
    twilio_messaging_service_sid: str = ""
    twilio_base_url: str = "https://api.twilio.com"
    whatsapp_phone_number_id: str = Field(
        default="", description="WhatsApp Business sender; empty: WhatsApp is simulated."
    )
    whatsapp_access_token: SecretStr | None = None
    whatsapp_access_token_file: Path | None = None
    whatsapp_app_secret: SecretStr | None = None
    whatsapp_app_secret_file: Path | None = None
    whatsapp_verify_token: SecretStr | None = None
    whatsapp_api_version: str = Field(default="v21.0", pattern=r"^v[0-9]+\.[0-9]+$")
    whatsapp_base_url: str = "https://graph.facebook.com"
    inapp: bool = Field(
        default=False, description="Keep in-app messages for apps; false: simulated."
    )
    inapp_max_per_user: int = Field(default=50, ge=1, le=1000)
    inapp_days: float = Field(default=30.0, gt=0, le=3660)


def bootstrap_servers(broker_url: str) -> str:
    """``kafka://a:9092,kafka://b:9092`` or ``a:9092,b:9092`` -> ``a:9092,b:9092``."""
    hosts = [part.strip().removeprefix("kafka://") for part in broker_url.split(",")]
    return ",".join(host for host in hosts if host)
